import ArgumentParser
import Cluster
import Contrast
import Evaluation
import Foundation
import GGUF
import InputFiles
import Models
import MPI
import Pipeline
import RunConfig
import SafeTensors
import Tokenizer
import Training

/// The process's exit statuses (sysexits.h where one fits), listed in `lightreasoner --help` and the README.
enum ExitStatus: Int32, CaseIterable {
    case failure = 1
    case usage = 64
    case badInput = 65
    case missingInput = 66
    case unavailable = 69
    case refused = 73
    case ioError = 74
    case busy = 75

    var meaning: String {
        switch self {
        case .failure: "a runtime error not covered below (the message says which)"
        case .usage: "bad flags or option values; the usage is printed, except for a value only the model rules out (e.g. --max-new-tokens beyond its context)"
        case .badInput: "an input is malformed or inconsistent: model (NaN weights included), tokenizer, chat template, prompt, samples, dataset, config"
        case .missingInput: "an input file or directory does not exist"
        case .unavailable: "the cluster failed: MPI, ZeroMQ, or ranks that disagree"
        case .refused: "an output already holds work made differently (continuing would mix the two), or is one of the inputs"
        case .ioError: "reading or writing a file failed (disk full, permissions)"
        case .busy: "another process is writing the output folder (a second run, sample, train or eval on it); rerun when it has finished"
        }
    }

    /// One line per status, for help texts (no alignment, so it survives re-wrapping).
    static var table: String {
        (["0: success"] + allCases.map { "\($0.rawValue): \($0.meaning)" }).joined(separator: "\n")
    }
}

/// Runtime failures the commands raise themselves; module errors pass through with their own types.
enum CommandFailure: Error, CustomStringConvertible {
    /// An output holds work made with other inputs or settings.
    case refused(String, hint: String)
    /// An input file's content is unusable.
    case badInput(String, hint: String)
    /// An input file or directory does not exist.
    case missingInput(String, hint: String)

    var description: String {
        switch self {
        case let .refused(text, hint), let .badInput(text, hint), let .missingInput(text, hint): "\(text); hint: \(hint)"
        }
    }

    var status: ExitStatus {
        switch self {
        case .refused: .refused
        case .badInput: .badInput
        case .missingInput: .missingInput
        }
    }
}

extension ExitStatus {
    /// The status a runtime error exits with, by the layer that raised it.
    init(for error: Error) {
        switch error {
        case let failure as CommandFailure: self = failure.status
        case let cluster as ClusterError:
            switch cluster {
            case .usage: self = .usage
            case .refused: self = .refused
            case .io: self = .ioError
            }
        case let decoder as DecoderError:
            switch decoder {
            case .badMaxNewTokens, .bf16ComputeNeedsStoredWeights: self = .usage
            case .emptyPrompt, .nonFiniteLogits, .contextTooLong: self = .badInput
            case .cacheFull: self = .failure
            }
        case let speculative as SpeculativeError:
            switch speculative {
            case .badDraftTokens: self = .usage
            case .vocabularyMismatch: self = .badInput
            }
        case let training as TrainingError:
            switch training {
            case .invalidOption: self = .usage
            case .noExamples, .badCheckpoint: self = .badInput
            case .nonFinite: self = .failure
            }
        case SamplingError.invalidSetting: self = .usage
        case is AdapterMerge.MergeError: self = .refused
        case TokenizerError.missingFile, SafeTensorsError.noSafeTensorsFiles, SafeTensorsError.missingShardFile, EvaluationError.missingRun:
            self = .missingInput
        case is TokenizerError, is ChatTemplateError, is SafeTensorsError, is ModelConfigError, is CheckpointError,
             is DatasetError, is SampleDataError, is PEFTError, is ConfigError, is EvaluationError, is SamplingError,
             is TrainingModelError, is SoftLabelError, is GGUFError:
            self = .badInput
        case let claim as OutputLockError:
            switch claim {
            case .busy: self = .busy
            case .unusable: self = .ioError
            }
        case let input as InputFileError:
            switch input {
            case .missing: self = .missingInput
            case .unreadable: self = .ioError
            case .notRegular, .tooLarge, .badLine: self = .badInput
            }
        case let relabel as RelabelError: self = relabel.isMissingInput ? .missingInput : .badInput
        case is StepTraceError: self = .badInput
        case let sweep as SweepError:
            if case .baseIncomplete = sweep { self = .missingInput } else { self = .badInput }
        case let log as DurableLogError:
            if case .io = log { self = .ioError } else { self = .badInput }
        case let pipeline as PipelineError:
            switch pipeline {
            case .incompleteCoordinatorRun, .missing: self = .missingInput
            case .refused: self = .refused
            case .damagedShard, .inconsistent, .malformed: self = .badInput
            case .unreadable: self = .ioError
            }
        case is ZeroMQError, is MPIError, is RanksDisagree: self = .unavailable
        case let cocoa as CocoaError where [.fileReadNoSuchFile, .fileNoSuchFile].contains(cocoa.code): self = .missingInput
        case is CocoaError, is POSIXError: self = .ioError
        default: self = .failure
        }
    }
}

/// "error: what; hint: how" printed as two lines, without the usage text (which is for usage errors).
func errorMessage(_ error: Error) -> String {
    let text = "\(error)"
    guard let range = text.range(of: "; hint: ") ?? text.range(of: ". Hint: ") else { return "error: \(text)" }
    return "error: \(text[..<range.lowerBound])\nhint: \(text[range.upperBound...])"
}
