import Foundation

/// Turns SIGTERM (and SIGINT) into a flag the training loop polls, so it can write a checkpoint
/// and exit cleanly.
public final class TerminationFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var raised: Int32?
    private var sources: [DispatchSourceSignal] = []
    private let signals: [Int32]

    public init(signals: [Int32] = [SIGTERM, SIGINT]) {
        self.signals = signals
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [weak self] in
                guard let self else { return }
                self.lock.lock()
                if self.raised == nil { self.raised = number }
                self.lock.unlock()
            }
            source.resume()
            sources.append(source)
        }
    }

    /// The signal received, if any.
    public var received: Int32? {
        lock.lock()
        defer { lock.unlock() }
        return raised
    }

    public var isRaised: Bool { received != nil }

    /// The signals get their default action back (a later stage in the same process can be interrupted).
    deinit {
        sources.forEach { $0.cancel() }
        signals.forEach { signal($0, SIG_DFL) }
    }
}
