# KD_SANITIZE=ON: everything in this build directory (library, tests, benchmarks)
# is compiled with AddressSanitizer + UndefinedBehaviorSanitizer; the CUDA
# simulator's tests are left out (CMakeLists.txt). CI builds it into build-asan
# with KD_WITH_CUDA=OFF (scripts/sanitize.sh), whose build type sets the debug
# information (-g1: line tables, all a report prints).
option(KD_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer (use with KD_WITH_CUDA=OFF)" OFF)
if(KD_SANITIZE)
  if(KD_WITH_CUDA)
    message(FATAL_ERROR "KD_SANITIZE=ON needs -DKD_WITH_CUDA=OFF: nvcc's objects cannot be instrumented")
  endif()
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
