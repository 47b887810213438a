// The coordinator at scale: simulated sampler nodes (the real protocol, NodeCore and ZeroMQ, no model
// work) against the real `lightreasoner coordinator` on loopback, with churn. See cluster/README.md.
//
//   lr-cluster-sim drive --nodes 256 [--questions 2048] [--shard-size 4] [--delay-ms 20] [--out DIR]
//                        [--binary .build/release/lightreasoner] [--per-process N/16]
//   lr-cluster-sim nodes --connect EP --names a,b,... --stats FILE [--delay-ms 20] [--slow a,b] [--leave a,b]
//
// `drive` runs the same questions twice: without churn, then with churn (a quarter of the node processes
// join late, one is SIGKILLed mid-run, some nodes say bye after a few questions, two nodes are 20× slow so
// the end of the run leases their shards to idle nodes), and prints one JSON line per run: wall time,
// leases/s, commit latency percentiles, coordinator CPU seconds and peak RSS, backups, and whether the
// merged output (samples and steps shards) is byte-identical to the run without churn.
import Cluster
import Contrast
import Digest
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import CZeroMQ

struct Arguments {
    var values: [String: String] = [:]
    init(_ list: ArraySlice<String>) {
        var iterator = list.makeIterator()
        while let key = iterator.next() {
            guard key.hasPrefix("--") else { continue }
            values[String(key.dropFirst(2))] = iterator.next() ?? ""
        }
    }
    func string(_ key: String, _ fallback: String) -> String { values[key] ?? fallback }
    func int(_ key: String, _ fallback: Int) -> Int { values[key].flatMap(Int.init) ?? fallback }
    func list(_ key: String) -> [String] { values[key].map { $0.split(separator: ",").map(String.init) } ?? [] }
}

func fail(_ text: String) -> Never {
    FileHandle.standardError.write(Data("lr-cluster-sim: \(text)\n".utf8))
    exit(1)
}

// MARK: fake results

/// Deterministic records and step data for a question, about the size of a real one (the tiny pair:
/// ~40 KB of records and ~11 KB of step data per question at 128 tokens): the same bytes whichever node
/// computes them, so outputs compare byte for byte.
func fakeResult(_ question: LeasedQuestion) -> SampledQuestion {
    var state = UInt64(truncatingIfNeeded: question.index) &* 0x9E3779B97F4A7C15 &+ 1
    func next(_ bound: Int) -> Int {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Int((state >> 33) % UInt64(bound))
    }
    let generated = (0..<128).map { _ in Int32(next(150_000)) }
    var steps: [StepTrace.Step] = []
    for _ in 1..<generated.count {
        let k = 1 + next(4)
        let ids = Array(Set((0..<k).map { _ in Int32(next(150_000)) })).sorted()
        steps.append(.init(kl: Double(next(1000)) / 1000, set: .init(ids: ids, expert: ids.map { _ in Double(next(1000)) / 1000 },
                                                                amateur: ids.map { _ in Double(next(1000)) / 1000 })))
    }
    let records = steps.enumerated().compactMap { index, step -> SampleRecord? in
        guard step.kl >= 0.7 else { return nil }
        let prefix = Array(generated.prefix(index + 1))
        return SampleRecord(promptID: question.promptID, step: index + 1, prefix: String(repeating: "reasoning ", count: 4 * (index + 1) / 3),
                            tokens: step.set.ids.map { "t\($0)" }, tokenIDs: step.set.ids.map(Int.init),
                            weights: step.set.ids.map { _ in 1 / Double(step.set.ids.count) }, klDivergence: step.kl,
                            questionID: question.id, prefixIDs: prefix)
    }
    return SampledQuestion(records: records, trace: StepTrace(questionID: question.id, promptID: question.promptID, floor: 0.05,
                                                              generated: generated, steps: steps))
}

// MARK: simulated nodes

final class NodeStats: @unchecked Sendable {
    private let lock = NSLock()
    var latencies: [Double] = []
    var leases = 0
    var committed = 0
    var duplicates = 0
    func add(_ body: (NodeStats) -> Void) { lock.lock(); body(self); lock.unlock() }
}

/// One node: a DEALER socket, NodeCore, and a "worker" that finishes each leased question `delay` after
/// the previous one. `leaveAfter`: say bye after that many committed questions.
func simulateNode(name: String, endpoint: String, expert: ModelFingerprint, amateur: ModelFingerprint, delay: Double,
                  leaveAfter: Int?, context: ZeroMQContext, stats: NodeStats) {
    let socket: ZeroMQSocket
    do {
        socket = try ZeroMQSocket(context, type: .dealer)
        let tail = (0..<4).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        try socket.setOption(ZMQ_ROUTING_ID, bytes: Array("\(name)/\(tail)".utf8))
        try socket.setOption(ZMQ_IMMEDIATE, Int32(1))
        try socket.setOption(ZMQ_LINGER, Int32(200))
        try socket.connect(endpoint)
    } catch { fail("\(name): \(error)") }
    let core = NodeCore(config: {
        var config = NodeConfig(name: name, host: "sim", pid: Int(getpid()), expert: expert, amateur: amateur)
        config.helloRetrySeconds = 0.5
        config.giveUpSeconds = 60
        return config
    }(), now: monotonicSeconds())
    var outbox: [[[UInt8]]] = []
    var work: [(due: Double, shard: Int, question: LeasedQuestion)] = []
    var sentAt: [Int: Double] = [:]
    var done = false
    var committedHere = 0

    func apply(_ effects: [NodeEffect]) {
        let now = monotonicSeconds()
        for effect in effects {
            switch effect {
            case let .send(message):
                if case let .result(result, _) = message.body, result.chunk == 0, sentAt[result.question] == nil { sentAt[result.question] = now }
                outbox.append(MessageCodec.encode(message))
            case let .startLease(lease, _):
                stats.add { $0.leases += 1 }
                for (i, question) in lease.questions.enumerated() { work.append((now + delay * Double(i + 1), lease.shard, question)) }
                if lease.questions.isEmpty { apply(core.workerFinished(shard: lease.shard, now: now)) }
            case let .abandonLease(shard):
                work.removeAll { $0.shard == shard }
                apply(core.workerFinished(shard: shard, now: now))
            case .log:
                break
            case .exit:
                done = true
            case .crash:
                done = true
            }
        }
        while let first = outbox.first, (try? socket.trySend(first)) == true { outbox.removeFirst() }
    }

    apply(core.start(now: monotonicSeconds()))
    while !done {
        let now = monotonicSeconds()
        let wait = work.first.map { max(0, min(0.05, $0.due - now)) } ?? 0.05
        if (try? socket.poll(milliseconds: Int(wait * 1000))) == true {
            while let frames = try? socket.receive(), !frames.isEmpty {
                if let message = try? MessageCodec.decode(frames, expectedRun: nil), case let .ack(ack) = message.body {
                    let start = sentAt.removeValue(forKey: ack.question)
                    stats.add {
                        if let start { $0.latencies.append(monotonicSeconds() - start) }
                        if ack.status == .committed { $0.committed += 1 } else { $0.duplicates += 1 }
                    }
                    if ack.status == .committed { committedHere += 1 }
                }
                apply(core.received(frames, now: monotonicSeconds()))
                if (try? socket.poll(milliseconds: 0)) != true { break }
            }
        }
        let later = monotonicSeconds()
        while let first = work.first, first.due <= later {
            work.removeFirst()
            let sampled = fakeResult(first.question)
            guard let (payload, traceBytes) = try? ResultPayload.encode(sampled) else { fail("encode") }
            apply(core.computed(shard: first.shard, question: first.question.index, payload: payload, records: sampled.records.count,
                                traceBytes: traceBytes, now: later))
            if !work.contains(where: { $0.shard == first.shard }) { apply(core.workerFinished(shard: first.shard, now: later)) }
        }
        if let leaveAfter, committedHere >= leaveAfter, !done { apply(core.leave("simulated churn: leaving", status: 0)) }
        apply(core.tick(now: monotonicSeconds()))
    }
}

struct NodesReport: Codable {
    var latencies: [Double]
    var leases: Int
    var committed: Int
    var duplicates: Int
}

/// `nodes`: several simulated nodes in this process, one thread each; their statistics to --stats.
func runNodes(_ a: Arguments) {
    let endpoint = a.string("connect", "")
    let names = a.list("names")
    guard !endpoint.isEmpty, !names.isEmpty, let statsPath = a.values["stats"] else { fail("nodes needs --connect, --names and --stats") }
    let expert: ModelFingerprint, amateur: ModelFingerprint
    do {
        expert = try ModelFingerprint.of(directory: URL(fileURLWithPath: a.string("expert", "models/tiny-expert")))
        amateur = try ModelFingerprint.of(directory: URL(fileURLWithPath: a.string("amateur", "models/tiny-amateur")))
    } catch { fail("\(error)") }
    let delay = Double(a.int("delay-ms", 20)) / 1000
    let slow = Set(a.list("slow")), leaving = Set(a.list("leave"))
    guard let context = try? ZeroMQContext() else { fail("no ZeroMQ context") }
    let stats = NodeStats()
    let finished = DispatchGroup()
    for name in names {
        finished.enter()
        let thread = Thread {
            simulateNode(name: name, endpoint: endpoint, expert: expert, amateur: amateur, delay: slow.contains(name) ? 20 * delay : delay,
                         leaveAfter: leaving.contains(name) ? 3 : nil, context: context, stats: stats)
            finished.leave()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    finished.wait()
    let report = NodesReport(latencies: stats.latencies, leases: stats.leases, committed: stats.committed, duplicates: stats.duplicates)
    do { try JSONEncoder().encode(report).write(to: URL(fileURLWithPath: statsPath)) } catch { fail("\(error)") }
}

// MARK: driver

/// CPU seconds (user + system) and peak RSS (VmHWM, KiB) of a live process.
func processUsage(_ pid: Int32) -> (cpu: Double, peakKiB: Int)? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    let hwm = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }?.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    return ((user + system) / Double(sysconf(Int32(_SC_CLK_TCK))), hwm)
}

struct RunResult: Codable {
    var nodes: Int
    var churn: Bool
    var questions: Int
    var seconds: Double
    var leases: Int
    var leasesPerSecond: Double
    var questionsPerSecond: Double
    var commitLatencyMs: [String: Double]
    var coordinatorCPUSeconds: Double
    var coordinatorPeakRSSMiB: Double
    var backups: Int
    var duplicates: Int
    var killed: Int
    var left: Int
    var lateJoined: Int
    var outputSHA256: String
    var identicalToNoChurn: Bool?
}

func drive(_ a: Arguments) {
    let nodes = a.int("nodes", 16), questionCount = a.int("questions", 2048), shardSize = a.int("shard-size", 4)
    let perProcess = max(1, a.int("per-process", max(1, nodes / 16))), delay = a.int("delay-ms", 20)
    let binary = a.string("binary", ".build/release/lightreasoner")
    let simulator = CommandLine.arguments[0]
    let root = URL(fileURLWithPath: a.string("out", NSTemporaryDirectory() + "lr-scale-\(nodes)"))
    try? FileManager.default.removeItem(at: root)
    try? FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    let data = root.appendingPathComponent("questions.jsonl")
    let lines = (0..<questionCount).map { "{\"id\": \"q\($0)\", \"question\": \"Question \($0): a GSM8K-sized word problem about apples, trains and money, padded to a realistic length for the lease messages.\"}" }
    FileManager.default.createFile(atPath: data.path, contents: Data((lines.joined(separator: "\n") + "\n").utf8))

    var reference: String?
    for churn in [false, true] {
        let out = root.appendingPathComponent(churn ? "churn" : "steady")
        let log = root.appendingPathComponent(churn ? "churn-coordinator.log" : "steady-coordinator.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let coordinator = Process()
        coordinator.executableURL = URL(fileURLWithPath: binary)
        coordinator.arguments = ["coordinator", "--data", data.path, "--out", out.path, "--bind", "tcp://127.0.0.1:*",
                                 "--shard-size", "\(shardSize)", "--heartbeat-ms", "200", "--node-timeout", "2", "--progress-seconds", "5",
                                 "--straggler-seconds", "1", "--lease-seconds", "60", "--expert", a.string("expert", "models/tiny-expert"),
                                 "--amateur", a.string("amateur", "models/tiny-amateur")]
        guard let handle = try? FileHandle(forWritingTo: log) else { fail("log") }
        coordinator.standardError = handle
        coordinator.standardOutput = handle
        do { try coordinator.run() } catch { fail("coordinator: \(error)") }
        let endpointFile = out.appendingPathComponent("endpoint")
        var endpoint = ""
        for _ in 0..<600 where endpoint.isEmpty {
            usleep(50_000)
            endpoint = ((try? String(contentsOf: endpointFile, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard !endpoint.isEmpty else { fail("no endpoint from the coordinator; see \(log.path)") }
        let names = (0..<nodes).map { "n\($0)" }
        let groups = stride(from: 0, to: nodes, by: perProcess).map { Array(names[$0..<min($0 + perProcess, nodes)]) }
        // Churn: the last quarter of the processes join late, one early process is SIGKILLed mid-run,
        // every 10th node leaves after 3 questions, two nodes are 20× slow (stragglers at the end).
        let late = churn && groups.count > 2 ? max(1, groups.count / 4) : 0
        var children: [(process: Process, stats: URL, names: [String])] = []
        func start(_ group: [String], _ index: Int) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: simulator)
            let stats = root.appendingPathComponent("\(churn ? "churn" : "steady")-nodes-\(index).json")
            process.arguments = ["nodes", "--connect", endpoint, "--names", group.joined(separator: ","), "--stats", stats.path,
                                 "--delay-ms", "\(delay)", "--expert", a.string("expert", "models/tiny-expert"),
                                 "--amateur", a.string("amateur", "models/tiny-amateur")]
                + (churn ? ["--slow", "n1,n2", "--leave", group.filter { Int($0.dropFirst())! % 10 == 5 }.joined(separator: ",")] : [])
            process.standardError = handle
            do { try process.run() } catch { fail("nodes: \(error)") }
            children.append((process, stats, group))
        }
        let started = monotonicSeconds()
        for (index, group) in groups.enumerated().dropLast(late) { start(group, index) }
        var killed = 0, lateJoined = 0
        var cpu = 0.0, peak = 0
        let progress = out.appendingPathComponent("journal/progress.jsonl")
        while coordinator.isRunning {
            usleep(50_000)
            if let usage = processUsage(coordinator.processIdentifier) { cpu = usage.cpu; peak = max(peak, usage.peakKiB) }
            guard churn else { continue }
            let done = ((try? Data(contentsOf: progress)) ?? Data()).filter { $0 == UInt8(ascii: "\n") }.count
            if lateJoined == 0, done >= questionCount / 5 {
                for (index, group) in groups.enumerated().suffix(late) { start(group, index) }
                lateJoined = groups.suffix(late).reduce(0) { $0 + $1.count }
            }
            if killed == 0, done >= questionCount * 2 / 5, groups.count > 1 {
                // Not the group holding the slow nodes: the stragglers must live to the end.
                let victim = children[1]
                kill(victim.process.processIdentifier, SIGKILL)
                killed = victim.names.count
            }
        }
        let seconds = monotonicSeconds() - started
        for child in children where child.process.isRunning {
            let deadline = monotonicSeconds() + 30
            while child.process.isRunning && monotonicSeconds() < deadline { usleep(50_000) }
            if child.process.isRunning { kill(child.process.processIdentifier, SIGKILL) }
        }
        guard coordinator.terminationStatus == 0 else { fail("coordinator exited \(coordinator.terminationStatus); see \(log.path)") }
        var latencies: [Double] = []
        var leases = 0, duplicates = 0
        for child in children {
            guard let data = try? Data(contentsOf: child.stats), let report = try? JSONDecoder().decode(NodesReport.self, from: data) else { continue }
            latencies += report.latencies
            leases += report.leases
            duplicates += report.duplicates
        }
        latencies.sort()
        func percentile(_ p: Double) -> Double { latencies.isEmpty ? .nan : 1000 * latencies[min(latencies.count - 1, Int(p * Double(latencies.count)))] }
        guard let manifest = try? RunStore.Manifest.read(from: out) else { fail("no manifest in \(out.path)") }
        let digest = (manifest.shards + (manifest.stepsShards ?? [])).map(\.sha256).joined(separator: ",")
        let coordinatorLog = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        let backups = coordinatorLog.components(separatedBy: "(first result wins)").count - 1
        let granted = manifest.nodes.values.reduce(0) { $0 + ($1.statistics?.leasesGranted ?? 0) }
        if !churn { reference = digest }
        let result = RunResult(nodes: nodes, churn: churn, questions: questionCount, seconds: seconds, leases: max(leases, granted),
                               leasesPerSecond: Double(max(leases, granted)) / seconds, questionsPerSecond: Double(questionCount) / seconds,
                               commitLatencyMs: ["p50": percentile(0.5), "p90": percentile(0.9), "p99": percentile(0.99), "max": percentile(1)],
                               coordinatorCPUSeconds: cpu, coordinatorPeakRSSMiB: Double(peak) / 1024, backups: backups, duplicates: duplicates,
                               killed: killed, left: churn ? names.filter { Int($0.dropFirst())! % 10 == 5 }.count : 0, lateJoined: lateJoined,
                               outputSHA256: SHA256.hex(digest), identicalToNoChurn: churn ? digest == reference : nil)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: (try? encoder.encode(result)) ?? Data(), as: UTF8.self))
        fflush(nil)
    }
}

let arguments = CommandLine.arguments
switch arguments.dropFirst().first {
case "nodes": runNodes(Arguments(arguments.dropFirst(2)))
case "drive": drive(Arguments(arguments.dropFirst(2)))
default: fail("usage: lr-cluster-sim drive --nodes N [--questions Q] [--shard-size S] [--delay-ms D] [--out DIR] | nodes --connect EP --names a,b --stats FILE")
}
