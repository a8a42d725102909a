#!/usr/bin/env bash
# Builds the CPU test suite with AddressSanitizer + UndefinedBehaviorSanitizer
# into build-asan/ (no CUDA) and runs it. Non-zero exit on any failure or
# sanitizer report. The access checker of the CUDA simulator and ASan exclude
# each other, so the simulated GPU tests (tests/sim) are not built here: the
# normal build's "sim" tests check the kernels' memory accesses and races
# (including the mutants).
set -euo pipefail
cd "$(dirname "$0")/.."
# No MPI: Open MPI's own allocations outlive MPI_Finalize (LeakSanitizer reports
# 8 KiB even for a program that only calls MPI_Init and MPI_Finalize under
# mpirun, Open MPI 4.1.4), so every mpi.* test would fail here; they run in the
# normal build.
cmake -S . -B build-asan -DKD_WITH_CUDA=OFF -DKD_SANITIZE=ON -DKD_BUILD_BENCH=OFF -DKD_WITH_MPI=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DCMAKE_UNITY_BUILD=ON >/dev/null
# -O1, as ASan's documentation advises, and a unity build (each library's
# sources compiled in batches of 8, its headers parsed once per batch): this
# build only runs tests, and the two took its time from ~7.0 to 5.5 minutes on
# 2 cores (its tests ran 132 -> 156 s). -g1: line tables and function names,
# all a sanitizer report prints, at a fraction of -g's compile and link time.
# One job more than cores: links and I/O leave a core idle otherwise.
cmake --build build-asan -j"$(($(nproc) + 1))"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
# Left out here, run by the normal build only: the end-to-end pipeline runs
# (minutes under ASan; the orchestration tests that stop, resume and cap
# batches stay in, the epoch selection, command and sweep runs go), the Python
# harness tests of the GPU check, and the scripts that run the kdtrain binary
# end to end (readme_commands, bench_*_quick). This keeps CI under its 25 minutes.
ctest --test-dir build-asan --output-on-failure -j"$(nproc)" \
  -E '^(PipelineEndToEnd$|PipelineSelection\.|PipelineCommands\.|SmallSweep\.|gpu_check_scripts$|readme_commands$|bench_.*_quick$)'
