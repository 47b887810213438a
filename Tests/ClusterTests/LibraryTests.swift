import Foundation
import Testing
import Cluster
import TestSupport

@Suite(.serialized) struct ZeroMQTests {
    @Test func requestReplyOverLoopbackOnEphemeralPort() throws {
        let context = try ZeroMQContext()
        let server = try ZeroMQSocket(context, type: .reply)
        try server.bind("tcp://127.0.0.1:*")
        let endpoint = try server.lastEndpoint()
        #expect(endpoint.hasPrefix("tcp://127.0.0.1:"))
        let port = Int(endpoint.split(separator: ":").last ?? "") ?? 0
        #expect(port > 0, "bound endpoint \(endpoint) has no port")

        let client = try ZeroMQSocket(context, type: .request)
        try client.setReceiveTimeout(milliseconds: 5000)
        try server.setReceiveTimeout(milliseconds: 5000)
        try client.connect(endpoint)

        let payload: [UInt8] = Array("question 17".utf8) + [0, 255, 128]
        try client.send([Array("hello".utf8), payload])
        let request = try #require(try server.receive())
        #expect(request == [Array("hello".utf8), payload])

        try server.send([Array("ack".utf8), request[1].reversed()])
        let reply = try #require(try client.receive())
        #expect(reply == [Array("ack".utf8), Array(payload.reversed())])
    }

    @Test func receiveTimesOutWithNil() throws {
        let context = try ZeroMQContext()
        let socket = try ZeroMQSocket(context, type: .pull)
        try socket.bind("tcp://127.0.0.1:*")
        try socket.setReceiveTimeout(milliseconds: 50)
        #expect(try socket.receive() == nil)
        #expect(try socket.poll(milliseconds: 10) == false)
    }

    @Test func bindErrorNamesEndpoint() throws {
        let context = try ZeroMQContext()
        let socket = try ZeroMQSocket(context, type: .reply)
        #expect {
            try socket.bind("nonsense://x")
        } throws: { error in
            String(describing: error).contains("nonsense://x")
        }
    }

    @Test func curveIsAvailable() {
        #expect(ZeroMQContext.has("curve"), "libzmq built without CURVE; libzmq \(ZeroMQContext.version)")
    }
}

@Suite(.serialized) struct MPITests {
    @Test func allreduceUnderMpirunWithTwoRanks() throws {
        let mpirun = try #require(which("mpirun"), "mpirun not on PATH; install openmpi-bin")
        let selftest = BuiltProducts.path("lr-mpi-selftest")
        #expect(FileManager.default.isExecutableFile(atPath: selftest), "missing \(selftest); build all products first")
        let result = try runChild(mpirun, ["-np", "2", "--oversubscribe", selftest],
                                    environment: ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"])
        #expect(result.status == 0, "mpirun failed: \(result.stderr)")
        // Σ over ranks of (rank+1) = 3 for two ranks.
        #expect(result.stdout.contains("allreduce ranks=2 count=1000 mismatches=0 sum[0]=3.0 sum[last]=3000.0"),
                "unexpected output: \(result.stdout)")
    }
}
