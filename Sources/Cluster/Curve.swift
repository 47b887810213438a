import Foundation
import CZeroMQ
#if canImport(Glibc)
import Glibc
#endif

/// CURVE key files of a run (`lightreasoner keygen --out DIR`):
///   server.public  server.secret    the coordinator's key pair
///   client.public  client.secret    a node key pair (more with --clients N: client-2.*, ...)
///   authorized_clients              client public keys the coordinator accepts, one per line
/// Each key file holds one Z85 key (40 characters). Secrets are written with mode 0600.
public enum CurveKeys {
    public static let serverPublic = "server.public"
    public static let serverSecret = "server.secret"
    public static let authorizedClients = "authorized_clients"

    public struct Server: Sendable {
        public var publicKey: String
        public var secretKey: String
        public var authorized: Set<String>
    }

    public struct Client: Sendable {
        public var serverPublicKey: String
        public var publicKey: String
        public var secretKey: String
        public init(serverPublicKey: String, publicKey: String, secretKey: String) {
            self.serverPublicKey = serverPublicKey
            self.publicKey = publicKey
            self.secretKey = secretKey
        }
    }

    public static func clientName(_ index: Int) -> String { index == 1 ? "client" : "client-\(index)" }

    /// Generates a server key pair and `clients` client key pairs into `directory`.
    public static func generate(into directory: URL, clients: Int, overwrite: Bool) throws -> [String] {
        guard ZeroMQContext.has("curve") else { throw ClusterError.usage("this libzmq (\(ZeroMQContext.version)) was built without CURVE") }
        let fileManager = FileManager.default
        try fileManager.createDirectory(at: directory, withIntermediateDirectories: true)
        let server = directory.appendingPathComponent(serverSecret)
        if fileManager.fileExists(atPath: server.path) && !overwrite {
            throw ClusterError.usage("\(server.path) exists; hint: pass --force to replace the run's keys (nodes holding the old keys are then refused)")
        }
        var written: [String] = []
        let (serverPub, serverSec) = try ZeroMQContext.curveKeyPair()
        try write(serverPub, to: directory.appendingPathComponent(serverPublic), secret: false)
        try write(serverSec, to: server, secret: true)
        written += [serverPublic, serverSecret]
        var authorized = "# client public keys allowed to join this run (one per line; '#' starts a comment)\n"
        for index in 1...max(1, clients) {
            let (pub, sec) = try ZeroMQContext.curveKeyPair()
            let name = clientName(index)
            try write(pub, to: directory.appendingPathComponent("\(name).public"), secret: false)
            try write(sec, to: directory.appendingPathComponent("\(name).secret"), secret: true)
            authorized += "\(pub) \(name)\n"
            written += ["\(name).public", "\(name).secret"]
        }
        try write(authorized, to: directory.appendingPathComponent(authorizedClients), secret: false, raw: true)
        written.append(authorizedClients)
        return written
    }

    private static func write(_ text: String, to url: URL, secret: Bool, raw: Bool = false) throws {
        let content = raw ? text : text + "\n"
        _ = FileManager.default.createFile(atPath: url.path, contents: nil, attributes: [.posixPermissions: secret ? 0o600 : 0o644])
        try Data(content.utf8).write(to: url)
        chmod(url.path, secret ? 0o600 : 0o644)
    }

    static func readKey(_ url: URL) throws -> String {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw ClusterError.usage("cannot read CURVE key \(url.path); hint: make keys with `lightreasoner keygen --out DIR`")
        }
        let key = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .first { !$0.isEmpty && !$0.hasPrefix("#") } ?? ""
        guard key.utf8.count == 40 else { throw ClusterError.usage("\(url.path) does not hold a 40-character Z85 CURVE key") }
        return key
    }

    public static func loadServer(_ directory: URL) throws -> Server {
        let publicKey = try readKey(directory.appendingPathComponent(serverPublic))
        let secretKey = try readKey(directory.appendingPathComponent(serverSecret))
        guard ZeroMQContext.curvePublicKey(secret: secretKey) == publicKey else {
            throw ClusterError.usage("\(directory.path): server.secret does not belong to server.public")
        }
        let listURL = directory.appendingPathComponent(authorizedClients)
        guard let list = try? String(contentsOf: listURL, encoding: .utf8) else {
            throw ClusterError.usage("cannot read \(listURL.path); hint: it lists the client public keys allowed to join")
        }
        var authorized = Set<String>()
        for (number, line) in list.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let key = String(trimmed.split(separator: " ").first ?? "")
            guard key.utf8.count == 40 else { throw ClusterError.usage("\(listURL.path):\(number + 1): not a 40-character Z85 public key") }
            authorized.insert(key)
        }
        if authorized.isEmpty { throw ClusterError.usage("\(listURL.path) lists no client key: no node could join") }
        return Server(publicKey: publicKey, secretKey: secretKey, authorized: authorized)
    }

    public static func loadClient(_ directory: URL, name: String = "client") throws -> Client {
        let serverKey = try readKey(directory.appendingPathComponent(serverPublic))
        let publicKey = try readKey(directory.appendingPathComponent("\(name).public"))
        let secretKey = try readKey(directory.appendingPathComponent("\(name).secret"))
        guard ZeroMQContext.curvePublicKey(secret: secretKey) == publicKey else {
            throw ClusterError.usage("\(directory.path): \(name).secret does not belong to \(name).public")
        }
        return Client(serverPublicKey: serverKey, publicKey: publicKey, secretKey: secretKey)
    }

    /// CURVE server options (set before bind).
    public static func configureServer(_ socket: ZeroMQSocket, _ keys: Server) throws {
        try socket.setOption(ZMQ_CURVE_SERVER, Int32(1))
        try socket.setOption(ZMQ_CURVE_SECRETKEY, string: keys.secretKey)
        try socket.setOption(ZMQ_ZAP_DOMAIN, string: ZAPHandler.domain)
    }

    /// CURVE client options (set before connect).
    public static func configureClient(_ socket: ZeroMQSocket, _ keys: Client) throws {
        try socket.setOption(ZMQ_CURVE_SERVERKEY, string: keys.serverPublicKey)
        try socket.setOption(ZMQ_CURVE_PUBLICKEY, string: keys.publicKey)
        try socket.setOption(ZMQ_CURVE_SECRETKEY, string: keys.secretKey)
    }
}

/// A minimal ZAP handler (RFC 27): a REP socket on inproc://zeromq.zap.01 in its own thread, accepting
/// CURVE clients whose public key is in the authorized list. Without it, libzmq lets any client that
/// knows the server's public key connect. Start it before the server socket binds; `stop()` before the
/// context goes away.
public final class ZAPHandler: @unchecked Sendable {
    public static let domain = "lightreasoner"
    public static let endpoint = "inproc://zeromq.zap.01"

    private let lock = NSLock()
    private var stopping = false
    private var finished = false
    private var accepted = 0
    private var refused = 0
    private let done = DispatchSemaphore(value: 0)
    private let log: @Sendable (String) -> Void

    public var counts: (accepted: Int, refused: Int) {
        lock.lock()
        defer { lock.unlock() }
        return (accepted, refused)
    }

    /// Binds the handler (errors surface here) and starts its thread.
    public init(context: ZeroMQContext, authorized: Set<String>, log: @escaping @Sendable (String) -> Void) throws {
        self.log = log
        let ready = DispatchSemaphore(value: 0)
        let failure = ErrorBox()
        let thread = Thread { [self] in
            let socket: ZeroMQSocket
            do {
                socket = try ZeroMQSocket(context, type: .reply)
                try socket.bind(Self.endpoint)
            } catch {
                failure.error = error
                ready.signal()
                done.signal()
                return
            }
            ready.signal()
            serve(socket, authorized: authorized)
            done.signal()
        }
        thread.name = "zap-handler"
        thread.start()
        ready.wait()
        if let error = failure.error { throw error }
    }

    private func serve(_ socket: ZeroMQSocket, authorized: Set<String>) {
        var lastLogged: [String: Date] = [:]
        while true {
            lock.lock()
            let stop = stopping
            lock.unlock()
            if stop { return }
            guard (try? socket.poll(milliseconds: 100)) == true, let request = try? socket.receive() else { continue }
            // version, request id, domain, address, routing id, mechanism, credentials...
            guard request.count >= 6 else {
                _ = try? socket.send([Array("1.0".utf8), [], Array("500".utf8), Array("malformed ZAP request".utf8), [], []])
                continue
            }
            let requestID = request[1]
            let address = String(decoding: request[3], as: UTF8.self)
            let mechanism = String(decoding: request[5], as: UTF8.self)
            var status = "400", text = "client key not authorized", user = ""
            if String(decoding: request[0], as: UTF8.self) != "1.0" {
                status = "500"; text = "unsupported ZAP version"
            } else if mechanism == "CURVE", request.count >= 7, let key = ZeroMQContext.z85(request[6]) {
                if authorized.contains(key) {
                    status = "200"; text = "OK"; user = key
                } else {
                    text = "client key \(key.prefix(8))… is not in authorized_clients"
                }
            } else {
                text = "mechanism \(mechanism) not allowed (CURVE required)"
            }
            lock.lock()
            if status == "200" { accepted += 1 } else { refused += 1 }
            lock.unlock()
            if status != "200" {
                let key = "\(address)|\(text)"
                if (lastLogged[key].map { Date().timeIntervalSince($0) > 30 }) ?? true {
                    lastLogged[key] = Date()
                    log("ZAP: refused a connection from \(address): \(text)")
                }
            }
            _ = try? socket.send([Array("1.0".utf8), requestID, Array(status.utf8), Array(text.utf8), Array(user.utf8), []])
        }
    }

    /// Stops the thread and closes its socket; waits for it.
    public func stop() {
        lock.lock()
        let already = finished
        stopping = true
        finished = true
        lock.unlock()
        if !already { done.wait() }
    }

    deinit { stop() }
}

final class ErrorBox: @unchecked Sendable {
    var error: Error?
}
