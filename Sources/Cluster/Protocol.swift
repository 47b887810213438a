import Foundation
import Contrast

/// The coordinator ⇄ sampler wire protocol (cluster/README.md, section PROTOCOL).
///
/// A message is one ZeroMQ multipart message of one or two frames:
///   frame 0: the envelope, UTF-8 JSON `{"v": 1, "type": "...", "run": "...", "body": {...}}`
///   frame 1: only for `result`: a chunk of the question's records as JSONL bytes.
/// (On the coordinator's ROUTER socket, libzmq prepends the peer's routing id frame.)
public enum WireProtocol {
    public static let version = 1
    /// Largest envelope frame either side accepts (a lease of a whole shard's question texts must fit).
    public static let maxEnvelopeBytes = 1 << 20
    /// Default and largest result chunk (frame 1); a question's records are split into chunks this size.
    public static let defaultChunkBytes = 256 * 1024
    public static let maxChunkBytes = 4 << 20
    /// libzmq's own limit (ZMQ_MAXMSGSIZE, per frame): only a backstop that drops a peer sending more.
    public static let socketMaxMessageBytes = Int64(maxEnvelopeBytes + maxChunkBytes + 4096)
    /// Cap on one question's reassembled records and on the number of chunks.
    public static let maxResultBytes = 512 << 20
    public static let maxChunks = 1 << 16
}

public enum MessageType: String, Codable, Sendable, CaseIterable {
    // node → coordinator
    case hello, request, heartbeat, result, bye
    // coordinator → node
    case welcome, lease, wait, ack, abandon, done, reset, refuse, pong
}

/// Node statistics sent with heartbeats (what the node has computed, whatever was committed).
public struct NodeReport: Codable, Sendable, Equatable {
    public var questions = 0
    public var stepsSeen = 0
    public var stepsKept = 0
    public var generatedTokens = 0
    public var expertSeconds = 0.0
    public var amateurSeconds = 0.0
    public init() {}
    enum CodingKeys: String, CodingKey {
        case questions, stepsSeen = "steps_seen", stepsKept = "steps_kept", generatedTokens = "generated_tokens"
        case expertSeconds = "expert_seconds", amateurSeconds = "amateur_seconds"
    }
}

public struct LeasedQuestion: Codable, Sendable, Equatable {
    public var index: Int
    public var id: String
    public var text: String
    /// What the records carry as `prompt_id` (Question.promptID).
    public var promptID: String
    public init(index: Int, id: String, text: String, promptID: String) {
        self.index = index
        self.id = id
        self.text = text
        self.promptID = promptID
    }
    public init(index: Int, _ question: Question) {
        self.init(index: index, id: question.id, text: question.text, promptID: question.promptID)
    }
    public var question: Question { Question(id: id, text: text, promptID: promptID) }
    enum CodingKeys: String, CodingKey { case index, id, text, promptID = "prompt_id" }
}

/// Message bodies, one per type.
public enum Body: Sendable, Equatable {
    public struct Hello: Codable, Sendable, Equatable {
        public var node: String
        public var host: String
        public var pid: Int
        /// The model the node computes with: the expert of a sampling run, the evaluated model of an evaluation.
        public var expert: ModelFingerprint
        /// Sampling only.
        public var amateur: ModelFingerprint?
        /// Set when the node was welcomed before (it says hello again after a reset).
        public var settingsSHA256: String?
        /// The settings its results so far were computed with (with `settingsSHA256`), so a refusal can
        /// name each difference (sampling nodes).
        public var settings: SamplingSettings?
        /// The work the node does (absent: sampling).
        public var work: WorkKind?
        public init(node: String, host: String, pid: Int, expert: ModelFingerprint, amateur: ModelFingerprint?, settingsSHA256: String? = nil,
                    settings: SamplingSettings? = nil, work: WorkKind? = nil) {
            self.node = node
            self.host = host
            self.pid = pid
            self.expert = expert
            self.amateur = amateur
            self.settingsSHA256 = settingsSHA256
            self.settings = settings
            self.work = work
        }
        enum CodingKeys: String, CodingKey { case node, host, pid, expert, amateur, settingsSHA256 = "settings_sha256", settings, work }
    }
    public struct Request: Codable, Sendable, Equatable {
        public var settingsSHA256: String
        /// The node's counters so far (also sent with heartbeats).
        public var report: NodeReport?
        public init(settingsSHA256: String, report: NodeReport? = nil) {
            self.settingsSHA256 = settingsSHA256
            self.report = report
        }
        enum CodingKeys: String, CodingKey { case settingsSHA256 = "settings_sha256", report }
    }
    public struct Heartbeat: Codable, Sendable, Equatable {
        /// The shard the node works on and its questions not yet acknowledged, so a restarted
        /// coordinator can hand the lease back to it.
        public var shard: Int?
        public var remaining: [Int]
        public var report: NodeReport
        public init(shard: Int?, remaining: [Int], report: NodeReport) {
            self.shard = shard
            self.remaining = remaining
            self.report = report
        }
    }
    public struct Result: Codable, Sendable, Equatable {
        public var shard: Int
        public var question: Int
        public var questionID: String
        public var chunk: Int
        public var chunks: Int
        /// Total payload bytes over all chunks and the number of records (JSONL lines).
        public var bytes: Int
        public var records: Int
        /// The payload's last `traceBytes` bytes are the question's step data (a StepTrace segment);
        /// absent when the run stores none.
        public var traceBytes: Int?
        public init(shard: Int, question: Int, questionID: String, chunk: Int, chunks: Int, bytes: Int, records: Int, traceBytes: Int? = nil) {
            self.shard = shard
            self.question = question
            self.questionID = questionID
            self.chunk = chunk
            self.chunks = chunks
            self.bytes = bytes
            self.records = records
            self.traceBytes = traceBytes
        }
        enum CodingKeys: String, CodingKey { case shard, question, questionID = "question_id", chunk, chunks, bytes, records, traceBytes = "trace_bytes" }
    }
    public struct Bye: Codable, Sendable, Equatable {
        public var reason: String
        public var error: Bool
        public init(reason: String, error: Bool) {
            self.reason = reason
            self.error = error
        }
    }
    public struct Welcome: Codable, Sendable, Equatable {
        /// A sampling run's settings, or an evaluation run's (exactly one is present).
        public var settings: SamplingSettings?
        public var evaluation: EvalWorkSettings?
        public var settingsSHA256: String
        public var heartbeatMilliseconds: Int
        public var nodeTimeoutMilliseconds: Int
        public var maxChunkBytes: Int
        public var totalQuestions: Int
        /// The run's question set (`RunIdentity.questionsDigest`): a node records it with the settings.
        public var questionsSHA256: String?
        public init(work: RunWork, settingsSHA256: String, heartbeatMilliseconds: Int,
                    nodeTimeoutMilliseconds: Int, maxChunkBytes: Int, totalQuestions: Int, questionsSHA256: String? = nil) {
            settings = work.sampling
            evaluation = work.evaluation
            self.settingsSHA256 = settingsSHA256
            self.heartbeatMilliseconds = heartbeatMilliseconds
            self.nodeTimeoutMilliseconds = nodeTimeoutMilliseconds
            self.maxChunkBytes = maxChunkBytes
            self.totalQuestions = totalQuestions
            self.questionsSHA256 = questionsSHA256
        }
        /// The run's work; nil when the message carries neither settings or both.
        public var work: RunWork? {
            switch (settings, evaluation) {
            case let (settings?, nil): .sample(settings)
            case let (nil, evaluation?): .eval(evaluation)
            default: nil
            }
        }
        enum CodingKeys: String, CodingKey {
            case settings, evaluation, settingsSHA256 = "settings_sha256", heartbeatMilliseconds = "heartbeat_ms"
            case nodeTimeoutMilliseconds = "node_timeout_ms", maxChunkBytes = "max_chunk_bytes", totalQuestions = "total_questions"
            case questionsSHA256 = "questions_sha256"
        }
    }
    public struct Lease: Codable, Sendable, Equatable {
        public var shard: Int
        public var questions: [LeasedQuestion]
        public var leaseSeconds: Double
        public init(shard: Int, questions: [LeasedQuestion], leaseSeconds: Double) {
            self.shard = shard
            self.questions = questions
            self.leaseSeconds = leaseSeconds
        }
        enum CodingKeys: String, CodingKey { case shard, questions, leaseSeconds = "lease_seconds" }
    }
    public struct Wait: Codable, Sendable, Equatable {
        public var retryMilliseconds: Int
        public init(retryMilliseconds: Int) { self.retryMilliseconds = retryMilliseconds }
        enum CodingKeys: String, CodingKey { case retryMilliseconds = "retry_ms" }
    }
    public struct Ack: Codable, Sendable, Equatable {
        public enum Status: String, Codable, Sendable { case committed, duplicate }
        public var question: Int
        public var status: Status
        public init(question: Int, status: Status) {
            self.question = question
            self.status = status
        }
    }
    public struct Abandon: Codable, Sendable, Equatable {
        public var shard: Int
        public var reason: String
        public init(shard: Int, reason: String) {
            self.shard = shard
            self.reason = reason
        }
    }
    public struct Reason: Codable, Sendable, Equatable {
        public var reason: String
        /// For `refuse`: the node cannot take part in this run and should exit.
        public var fatal: Bool
        public init(reason: String, fatal: Bool = false) {
            self.reason = reason
            self.fatal = fatal
        }
    }

    case hello(Hello)
    case request(Request)
    case heartbeat(Heartbeat)
    case result(Result, payload: [UInt8])
    case bye(Bye)
    case welcome(Welcome)
    case lease(Lease)
    case wait(Wait)
    case ack(Ack)
    case abandon(Abandon)
    case done
    /// The answer to a heartbeat: the coordinator is alive and knows the node.
    case pong
    case reset(Reason)
    case refuse(Reason)

    public var type: MessageType {
        switch self {
        case .hello: .hello
        case .request: .request
        case .heartbeat: .heartbeat
        case .result: .result
        case .bye: .bye
        case .welcome: .welcome
        case .lease: .lease
        case .wait: .wait
        case .ack: .ack
        case .abandon: .abandon
        case .done: .done
        case .pong: .pong
        case .reset: .reset
        case .refuse: .refuse
        }
    }
}

/// A decoded message: envelope fields plus body.
public struct Message: Sendable, Equatable {
    public var version: Int
    public var runID: String
    public var body: Body

    public init(runID: String, body: Body, version: Int = WireProtocol.version) {
        self.version = version
        self.runID = runID
        self.body = body
    }
}

/// Why a message was refused; `description` is what gets logged and sent back.
public enum ProtocolViolation: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case wrongVersion(Int)
    case foreignRun(String)
    case tooLarge(String)

    public var description: String {
        switch self {
        case let .malformed(reason): "malformed message: \(reason)"
        case let .wrongVersion(version): "protocol version \(version) is not supported (this side speaks \(WireProtocol.version)); hint: run the same lightreasoner build everywhere"
        case let .foreignRun(run): "message for run '\(run)', not this run; hint: the node belongs to another coordinator run, restart it"
        case let .tooLarge(reason): "message too large: \(reason)"
        }
    }
}

private struct EnvelopeHeader: Decodable {
    let v: Int
    let type: String
    let run: String
}

private struct EnvelopeOut<B: Encodable>: Encodable {
    let v: Int
    let type: String
    let run: String
    let body: B?
}

private struct BodyOnly<B: Decodable>: Decodable {
    let body: B
}

private struct Empty: Codable {}

public enum MessageCodec {
    public static func encode(_ message: Message) -> [[UInt8]] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        func frame<B: Encodable>(_ body: B?) -> [UInt8] {
            // Encoding our own Codable structs cannot fail.
            Array(try! encoder.encode(EnvelopeOut(v: message.version, type: message.body.type.rawValue, run: message.runID, body: body)))
        }
        switch message.body {
        case let .hello(b): return [frame(b)]
        case let .request(b): return [frame(b)]
        case let .heartbeat(b): return [frame(b)]
        case let .result(b, payload): return [frame(b), payload]
        case let .bye(b): return [frame(b)]
        case let .welcome(b): return [frame(b)]
        case let .lease(b): return [frame(b)]
        case let .wait(b): return [frame(b)]
        case let .ack(b): return [frame(b)]
        case let .abandon(b): return [frame(b)]
        case .done, .pong: return [frame(Empty?.none)]
        case let .reset(b): return [frame(b)]
        case let .refuse(b): return [frame(b)]
        }
    }

    /// Envelope checks first (size, JSON, version, type), then the body. `expectedRun` nil accepts any
    /// run id (a node before its welcome; a hello). A `refuse` is decoded whatever its version, so a
    /// node can show why it was turned away.
    public static func decode(_ frames: [[UInt8]], expectedRun: String?) throws(ProtocolViolation) -> Message {
        guard let first = frames.first else { throw .malformed("no frames") }
        guard first.count <= WireProtocol.maxEnvelopeBytes else {
            throw .tooLarge("envelope of \(first.count) bytes exceeds \(WireProtocol.maxEnvelopeBytes)")
        }
        let data = Data(first)
        let decoder = JSONDecoder()
        guard let header = try? decoder.decode(EnvelopeHeader.self, from: data) else {
            throw .malformed("frame 0 is not a JSON envelope with v, type and run (\(first.count) bytes)")
        }
        guard let type = MessageType(rawValue: header.type) else { throw .malformed("unknown message type '\(header.type.prefix(40))'") }
        if header.v != WireProtocol.version && type != .refuse { throw .wrongVersion(header.v) }
        if let expectedRun, type != .hello, type != .refuse, header.run != expectedRun { throw .foreignRun(header.run) }
        let expectedFrames = type == .result ? 2 : 1
        guard frames.count == expectedFrames else {
            throw .malformed("\(type.rawValue) has \(frames.count) frames, expected \(expectedFrames)")
        }
        func body<B: Decodable>(_: B.Type) throws(ProtocolViolation) -> B {
            do { return try decoder.decode(BodyOnly<B>.self, from: data).body } catch {
                throw .malformed("\(type.rawValue) body: \(Self.describe(error))")
            }
        }
        let decoded: Body
        switch type {
        case .hello: decoded = .hello(try body(Body.Hello.self))
        case .request: decoded = .request(try body(Body.Request.self))
        case .heartbeat: decoded = .heartbeat(try body(Body.Heartbeat.self))
        case .result:
            let result = try body(Body.Result.self)
            guard frames[1].count <= WireProtocol.maxChunkBytes else {
                throw .tooLarge("result chunk of \(frames[1].count) bytes exceeds \(WireProtocol.maxChunkBytes)")
            }
            decoded = .result(result, payload: frames[1])
        case .bye: decoded = .bye(try body(Body.Bye.self))
        case .welcome: decoded = .welcome(try body(Body.Welcome.self))
        case .lease: decoded = .lease(try body(Body.Lease.self))
        case .wait: decoded = .wait(try body(Body.Wait.self))
        case .ack: decoded = .ack(try body(Body.Ack.self))
        case .abandon: decoded = .abandon(try body(Body.Abandon.self))
        case .done: decoded = .done
        case .pong: decoded = .pong
        case .reset: decoded = .reset(try body(Body.Reason.self))
        case .refuse: decoded = .refuse(try body(Body.Reason.self))
        }
        return Message(runID: header.run, body: decoded, version: header.v)
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case let DecodingError.keyNotFound(key, context):
            return "missing key '\(key.stringValue)'" + (context.codingPath.isEmpty ? "" : " in \(context.codingPath.map(\.stringValue).joined(separator: "."))")
        case let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context):
            return "wrong type at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        case let DecodingError.dataCorrupted(context):
            return "bad value at \(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)"
        default:
            return "\(error)"
        }
    }
}

/// One question's records as the JSONL bytes `sample` writes (then its step data, if any), split into
/// chunks and joined again.
public enum ResultPayload {
    /// Records then step data; returns the payload and the step data's length (nil without).
    public static func encode(_ sampled: SampledQuestion) throws -> (payload: [UInt8], traceBytes: Int?) {
        let trace = sampled.trace?.encoded()
        return (try encode(sampled.records) + (trace ?? []), trace?.count)
    }

    public static func encode(_ records: [SampleRecord]) throws -> [UInt8] {
        var bytes: [UInt8] = []
        for record in records {
            bytes.append(contentsOf: try record.jsonLine())
            bytes.append(UInt8(ascii: "\n"))
        }
        return bytes
    }

    public static func chunks(_ bytes: [UInt8], chunkBytes: Int) -> [[UInt8]] {
        if bytes.isEmpty { return [[]] }
        return stride(from: 0, to: bytes.count, by: chunkBytes).map { Array(bytes[$0..<min($0 + chunkBytes, bytes.count)]) }
    }

    public static func decode(_ bytes: [UInt8]) throws -> [SampleRecord] {
        let decoder = JSONDecoder()
        return try bytes.split(separator: UInt8(ascii: "\n")).map { try decoder.decode(SampleRecord.self, from: Data($0)) }
    }
}
