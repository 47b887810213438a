// SHA-256 moved to its own module; Cluster re-exports it so its users need no extra import.
@_exported import Digest
