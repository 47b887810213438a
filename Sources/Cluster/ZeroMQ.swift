import CZeroMQ
#if canImport(Glibc)
import Glibc
#endif

/// Errors from libzmq, carrying errno text and what we were doing.
public struct ZeroMQError: Error, CustomStringConvertible {
    public let operation: String
    public let code: Int32
    public var message: String { String(cString: zmq_strerror(code)) }
    public var description: String {
        var text = "ZeroMQ \(operation) failed: \(message) (errno \(code))"
        if code == EADDRINUSE { text += "; hint: another process holds that port, pick another or use port '*'" }
        if code == EPROTONOSUPPORT { text += "; hint: endpoints look like tcp://HOST:PORT" }
        return text
    }
    static func last(_ operation: String) -> ZeroMQError {
        ZeroMQError(operation: operation, code: zmq_errno())
    }
}

/// One libzmq context per process; sockets keep it alive.
public final class ZeroMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    public init() throws {
        guard let handle = zmq_ctx_new() else { throw ZeroMQError.last("zmq_ctx_new") }
        self.handle = handle
    }

    deinit { zmq_ctx_term(handle) }

    /// libzmq's version as "major.minor.patch".
    public static var version: String {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }

    /// Whether the library was built with a capability such as "curve".
    public static func has(_ capability: String) -> Bool { zmq_has(capability) != 0 }

    /// A new CURVE key pair as Z85 text (40 characters each): (public, secret).
    public static func curveKeyPair() throws -> (publicKey: String, secretKey: String) {
        var publicKey = [CChar](repeating: 0, count: 41), secretKey = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&publicKey, &secretKey) == 0 else { throw ZeroMQError.last("zmq_curve_keypair") }
        func text(_ chars: [CChar]) -> String {
            String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return (text(publicKey), text(secretKey))
    }

    /// The public key belonging to a Z85 secret key; nil when the text is not a valid key.
    public static func curvePublicKey(secret: String) -> String? {
        guard secret.utf8.count == 40 else { return nil }
        var publicKey = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&publicKey, secret) == 0 else { return nil }
        return String(decoding: publicKey.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Z85 text of 32 raw key bytes (a ZAP request carries the client key raw).
    public static func z85(_ bytes: [UInt8]) -> String? {
        guard bytes.count % 4 == 0 else { return nil }
        var out = [CChar](repeating: 0, count: bytes.count * 5 / 4 + 1)
        let ok = bytes.withUnsafeBufferPointer { zmq_z85_encode(&out, $0.baseAddress, $0.count) } != nil
        guard ok else { return nil }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

public enum ZeroMQSocketType: Sendable {
    case request, reply, dealer, router, push, pull, pair
    var raw: Int32 {
        switch self {
        case .pair: ZMQ_PAIR
        case .request: ZMQ_REQ
        case .reply: ZMQ_REP
        case .dealer: ZMQ_DEALER
        case .router: ZMQ_ROUTER
        case .push: ZMQ_PUSH
        case .pull: ZMQ_PULL
        }
    }
}

/// A socket owned by one thread at a time (libzmq sockets are not thread-safe).
public final class ZeroMQSocket {
    let handle: UnsafeMutableRawPointer
    let context: ZeroMQContext   // keeps the context alive until every socket is closed

    public init(_ context: ZeroMQContext, type: ZeroMQSocketType) throws {
        guard let handle = zmq_socket(context.handle, type.raw) else { throw ZeroMQError.last("zmq_socket") }
        self.handle = handle
        self.context = context
        // Do not block process exit on unsent messages.
        try setOption(ZMQ_LINGER, Int32(0))
    }

    deinit { zmq_close(handle) }

    public func bind(_ endpoint: String) throws {
        guard zmq_bind(handle, endpoint) == 0 else { throw ZeroMQError.last("bind \(endpoint)") }
    }

    public func connect(_ endpoint: String) throws {
        guard zmq_connect(handle, endpoint) == 0 else { throw ZeroMQError.last("connect \(endpoint)") }
    }

    /// The endpoint actually bound, e.g. the port chosen for `tcp://127.0.0.1:*`.
    public func lastEndpoint() throws -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        var size = buffer.count
        guard zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buffer, &size) == 0 else {
            throw ZeroMQError.last("getsockopt ZMQ_LAST_ENDPOINT")
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func setOption(_ option: Int32, _ value: Int32) throws {
        var value = value
        guard zmq_setsockopt(handle, option, &value, MemoryLayout<Int32>.size) == 0 else {
            throw ZeroMQError.last("setsockopt \(option)")
        }
    }

    public func setOption(_ option: Int32, _ value: Int64) throws {
        var value = value
        guard zmq_setsockopt(handle, option, &value, MemoryLayout<Int64>.size) == 0 else {
            throw ZeroMQError.last("setsockopt \(option)")
        }
    }

    public func setOption(_ option: Int32, bytes: [UInt8]) throws {
        let status = bytes.withUnsafeBytes { zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }
        guard status == 0 else { throw ZeroMQError.last("setsockopt \(option)") }
    }

    /// Receive timeout in milliseconds (-1 waits forever); a timed-out receive returns nil.
    public func setReceiveTimeout(milliseconds: Int) throws { try setOption(ZMQ_RCVTIMEO, Int32(milliseconds)) }

    /// Sends all frames as one multipart message.
    public func send(_ frames: [[UInt8]]) throws {
        for (index, frame) in frames.enumerated() {
            let flags = index < frames.count - 1 ? ZMQ_SNDMORE : 0
            let sent = frame.withUnsafeBytes { zmq_send(handle, $0.baseAddress, $0.count, flags) }
            guard sent >= 0 else { throw ZeroMQError.last("send") }
        }
    }

    /// Sends without blocking; false when the message could not be queued now (no connected peer with
    /// room: EAGAIN). Once the first frame is accepted, libzmq accepts the rest of the message.
    public func trySend(_ frames: [[UInt8]]) throws -> Bool {
        for (index, frame) in frames.enumerated() {
            let flags = (index < frames.count - 1 ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT
            let sent = frame.withUnsafeBytes { zmq_send(handle, $0.baseAddress, $0.count, flags) }
            if sent < 0 {
                let code = zmq_errno()
                if code == EAGAIN && index == 0 { return false }
                throw ZeroMQError(operation: "send", code: code)
            }
        }
        return true
    }

    /// A string option (CURVE keys in Z85, ZMQ_ZAP_DOMAIN, ...), passed without a terminator.
    public func setOption(_ option: Int32, string: String) throws {
        try setOption(option, bytes: Array(string.utf8))
    }

    /// Reports this socket's connection events as 2-frame messages on a PAIR socket connected to
    /// `endpoint` (inproc://...): frame 1 = u16 event + u32 value (native order), frame 2 = peer address.
    public func monitor(_ endpoint: String, events: Int32 = ZMQ_EVENT_ALL) throws {
        guard zmq_socket_monitor(handle, endpoint, events) == 0 else { throw ZeroMQError.last("monitor \(endpoint)") }
    }

    /// Receives one multipart message; nil when the receive timeout expired.
    public func receive() throws -> [[UInt8]]? {
        var userID: String?
        return try receive(userID: &userID)
    }

    /// Also returns the message's User-Id metadata: under CURVE, the client public key the ZAP
    /// handler authenticated (nil when there is none).
    public func receive(userID: inout String?) throws -> [[UInt8]]? {
        var frames: [[UInt8]] = []
        userID = nil
        while true {
            var message = zmq_msg_t()
            zmq_msg_init(&message)
            defer { zmq_msg_close(&message) }
            if zmq_msg_recv(&message, handle, 0) < 0 {
                let code = zmq_errno()
                if code == EAGAIN && frames.isEmpty { return nil }
                throw ZeroMQError(operation: "receive", code: code)
            }
            if frames.isEmpty, let property = zmq_msg_gets(&message, "User-Id") { userID = String(cString: property) }
            let size = zmq_msg_size(&message)
            let data = zmq_msg_data(&message)!
            frames.append(Array(UnsafeRawBufferPointer(start: data, count: size)))
            if zmq_msg_more(&message) == 0 { return frames }
        }
    }

    /// Waits up to `milliseconds` (-1: forever) until one of `sockets` is readable; returns their indices.
    public static func poll(_ sockets: [ZeroMQSocket], milliseconds: Int) throws -> [Int] {
        var items = sockets.map { zmq_pollitem_t(socket: $0.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0) }
        let ready = zmq_poll(&items, Int32(items.count), milliseconds)
        guard ready >= 0 else {
            if zmq_errno() == EINTR { return [] }
            throw ZeroMQError.last("poll")
        }
        return items.indices.filter { (items[$0].revents & Int16(ZMQ_POLLIN)) != 0 }
    }

    /// Waits up to `milliseconds` for a message to be readable.
    public func poll(milliseconds: Int) throws -> Bool {
        var item = zmq_pollitem_t(socket: handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        let ready = zmq_poll(&item, 1, milliseconds)
        guard ready >= 0 else { throw ZeroMQError.last("poll") }
        return ready > 0 && (item.revents & Int16(ZMQ_POLLIN)) != 0
    }
}

/// One event from a socket monitor (zmq_socket_monitor, version 1 format).
public struct ZeroMQEvent: Sendable, Equatable {
    public let event: Int32
    public let value: UInt32
    public let address: String

    /// Parses the 2-frame monitor message: u16 event + u32 value in native order, then the address.
    public init?(frames: [[UInt8]]) {
        guard frames.count >= 2, frames[0].count >= 6 else { return nil }
        let head = frames[0]
        event = Int32(UInt16(head[0]) | UInt16(head[1]) << 8)
        value = UInt32(head[2]) | UInt32(head[3]) << 8 | UInt32(head[4]) << 16 | UInt32(head[5]) << 24
        address = String(decoding: frames[1], as: UTF8.self)
    }

    public var name: String {
        switch event {
        case ZMQ_EVENT_CONNECTED: "connected"
        case ZMQ_EVENT_CONNECT_DELAYED: "connect delayed"
        case ZMQ_EVENT_CONNECT_RETRIED: "connect retried"
        case ZMQ_EVENT_LISTENING: "listening"
        case ZMQ_EVENT_BIND_FAILED: "bind failed"
        case ZMQ_EVENT_ACCEPTED: "accepted"
        case ZMQ_EVENT_ACCEPT_FAILED: "accept failed"
        case ZMQ_EVENT_CLOSED: "closed"
        case ZMQ_EVENT_DISCONNECTED: "disconnected"
        case ZMQ_EVENT_MONITOR_STOPPED: "monitor stopped"
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed"
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: "handshake succeeded"
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake failed (protocol)"
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: "handshake failed (authentication)"
        default: "event \(event)"
        }
    }

    /// Why a handshake failed, in words; nil for other events.
    public var handshakeFailure: String? {
        switch event {
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            if value == UInt32(bitPattern: ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
                return "security mechanism mismatch with \(address): one side uses CURVE (--curve) and the other does not"
            }
            return String(format: "protocol error 0x%08x in the handshake with %@", value, address)
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            return "authentication refused by \(address) (ZAP status \(value)): this node's CURVE client key is not in the run's authorized_clients"
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            return "handshake with \(address) failed (no detail; a wrong server public key in --curve looks like this)"
        default:
            return nil
        }
    }
}
