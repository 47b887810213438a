// swift-tools-version:6.0
import PackageDescription

// Modules follow the data flow: C shims → Tensors → SafeTensors → Tokenizer/Models → … → Pipeline → CLI.
// Nothing lower imports anything higher.
let package = Package(
    name: "lightreasoner",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "lightreasoner", targets: ["lightreasoner"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // C libraries, found through pkg-config.
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"]), .brew(["openblas"])]),
        .systemLibrary(name: "CZeroMQ", pkgConfig: "libzmq",
                       providers: [.apt(["libzmq3-dev"]), .brew(["zeromq"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"]), .brew(["open-mpi"])]),
        // OpenMPI's handles are macros over globals; this exposes them as functions.
        .target(name: "CMPIShim", dependencies: ["CMPI"]),

        // Skinny matmul kernels for decoding (run-time ISA dispatch, no compiler flags).
        .target(name: "CKernels"),

        // SHA-256 for fingerprints, manifests and commit checksums; MPI for data-parallel training.
        .target(name: "Digest"),
        .target(name: "MPI", dependencies: ["CMPIShim"]),
        // Checks on user-supplied paths before they are opened (regular file, size).
        .target(name: "InputFiles"),

        .target(name: "Tensors", dependencies: ["CBLAS", "CKernels"]),
        .target(name: "SafeTensors", dependencies: ["Tensors", "InputFiles"]),
        .target(name: "Tokenizer", dependencies: ["InputFiles"]),
        .target(name: "Models", dependencies: ["Tensors", "SafeTensors", "InputFiles"]),
        // GGUF reading, dequantisation and conversion to an HF directory (`lightreasoner convert`).
        .target(name: "GGUF", dependencies: ["Tensors", "SafeTensors", "InputFiles"]),
        .target(name: "Contrast", dependencies: ["Tensors", "Models", "Tokenizer", "Digest", "InputFiles"]),
        .target(name: "Training", dependencies: ["Tensors", "SafeTensors", "Models", "Tokenizer", "Contrast", "InputFiles"]),
        .target(name: "Cluster", dependencies: ["CZeroMQ", "Digest", "Contrast", "Models", "Tokenizer", "InputFiles", "Evaluation"]),
        .target(name: "Evaluation", dependencies: ["Models", "Tokenizer", "InputFiles"]),
        // YAML run configs for `lightreasoner run` (configs/*.yaml).
        .target(name: "RunConfig", dependencies: ["InputFiles", "Models", "Contrast", "Training", "Evaluation", .product(name: "Yams", package: "Yams")]),

        // The stages in sequence: sessions, run planning, the handoffs between stages, the report's readers.
        .target(name: "Pipeline", dependencies: ["Digest", "MPI", "InputFiles", "Tensors", "Tokenizer", "Models", "Contrast", "Training", "Cluster", "Evaluation", "RunConfig",
                                                 .product(name: "Logging", package: "swift-log")]),

        .executableTarget(name: "lightreasoner", dependencies: [
            "Tensors", "SafeTensors", "Tokenizer", "Models", "GGUF", "Contrast", "Training", "Cluster", "Evaluation", "RunConfig", "Pipeline", "Digest", "MPI", "InputFiles",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // A tiny MPI program the tests launch under mpirun.
        .executableTarget(name: "lr-mpi-selftest", dependencies: ["MPI"]),
        // Simulated sampler nodes against the real coordinator (cluster/README.md, "At scale").
        .executableTarget(name: "lr-cluster-sim", dependencies: ["Cluster", "Contrast", "Digest", "CZeroMQ"]),

        // Helpers shared by the test suites (paths, built binaries, child processes).
        .target(name: "TestSupport"),

        .testTarget(name: "TensorsTests", dependencies: ["Tensors"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors", "Tensors"]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "SafeTensors", "Tensors", "TestSupport"]),
        .testTarget(name: "GGUFTests", dependencies: ["GGUF", "Models", "SafeTensors", "Tensors", "Tokenizer", "TestSupport"]),
        .testTarget(name: "ContrastTests", dependencies: ["Contrast"]),
        .testTarget(name: "SamplingTests", dependencies: ["Contrast", "Models", "Tokenizer", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Models", "SafeTensors", "Tensors", "Contrast"]),
        .testTarget(name: "MergeTests", dependencies: ["Training", "Models", "SafeTensors", "TestSupport"]),
        .testTarget(name: "ClusterTests", dependencies: ["Cluster", "Evaluation", "TestSupport"]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "TestSupport"]),
        .testTarget(name: "RunTests", dependencies: ["RunConfig", "Pipeline", "TestSupport"]),
        .testTarget(name: "RealModelTests", dependencies: ["Models", "Contrast", "Evaluation", "TestSupport"]),
        .testTarget(name: "PipelineTests", dependencies: ["Pipeline", "Digest", "Cluster", "Contrast", "Evaluation", "RunConfig", "Training", "TestSupport"]),
    ]
)
