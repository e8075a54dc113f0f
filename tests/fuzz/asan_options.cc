// AddressSanitizer's defaults for the harness binaries (ASAN_OPTIONS still
// overrides each). A quarantine of 32 MiB instead of 256: a run allocates a few
// hundred small blocks per input, so freed memory still waits out hundreds of
// inputs before reuse (a use after free is caught as before), while the default
// cycles every allocation through fresh memory, and the page faults of touching
// it cost a third of the executions.
extern "C" const char* __asan_default_options() { return "quarantine_size_mb=32"; }
