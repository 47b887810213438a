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
}

public enum ZeroMQSocketType: Sendable {
    case request, reply, dealer, router, push, pull
    var raw: Int32 {
        switch self {
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

    /// Receives one multipart message; nil when the receive timeout expired.
    public func receive() throws -> [[UInt8]]? {
        var frames: [[UInt8]] = []
        while true {
            var message = zmq_msg_t()
            zmq_msg_init(&message)
            defer { zmq_msg_close(&message) }
            if zmq_msg_recv(&message, handle, 0) < 0 {
                let code = zmq_errno()
                if code == EAGAIN && frames.isEmpty { return nil }
                throw ZeroMQError(operation: "receive", code: code)
            }
            let size = zmq_msg_size(&message)
            let data = zmq_msg_data(&message)!
            frames.append(Array(UnsafeRawBufferPointer(start: data, count: size)))
            if zmq_msg_more(&message) == 0 { return frames }
        }
    }

    /// Waits up to `milliseconds` for a message to be readable.
    public func poll(milliseconds: Int) throws -> Bool {
        var item = zmq_pollitem_t(socket: handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        let ready = zmq_poll(&item, 1, milliseconds)
        guard ready >= 0 else { throw ZeroMQError.last("poll") }
        return ready > 0 && (item.revents & Int16(ZMQ_POLLIN)) != 0
    }
}
