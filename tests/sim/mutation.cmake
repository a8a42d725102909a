# Mutation test of the CUDA simulator: each mutant is a copy of one kernel
# or engine source with one planted bug, written into the build tree at configure time
# (the sources in kernels/ are never changed), built into its own simulated
# test executable and run by CTest (label "sim"), which passes only when the
# test run fails and its output names the expected finding.
#
# kd_sim_mutant(NAME FAMILY ORIGINAL REPLACEMENT FILTER EXPECT): in
# kernels/FAMILY.cu, the one occurrence of ORIGINAL becomes REPLACEMENT; the
# run of tests/FAMILY_gpu_test.cpp restricted to FILTER must fail with output
# matching the regular expression EXPECT. A source change that removes ORIGINAL
# stops the configure step with a message naming the mutant.
function(kd_sim_mutant name family original replacement filter expect)
  set(source ${PROJECT_SOURCE_DIR}/kernels/${family}.cu)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${source})
  file(READ ${source} text)
  string(FIND "${text}" "${original}" first)
  string(FIND "${text}" "${original}" last REVERSE)
  if(first EQUAL -1 OR NOT first EQUAL last)
    message(FATAL_ERROR "mutant ${name}: kernels/${family}.cu must contain exactly once:\n  ${original}\n"
                        "update the mutant in tests/sim/mutation.cmake to the kernel's current code")
  endif()
  string(REPLACE "${original}" "${replacement}" text "${text}")
  set(mutant_source ${CMAKE_CURRENT_BINARY_DIR}/mutants/${name}/${family}.cu)
  file(CONFIGURE OUTPUT ${mutant_source} CONTENT "${text}" @ONLY)
  kd_sim_kernel_library(kd_sim_kernels_${name} ${mutant_source})
  # -O1 as test code: a mutant only has to run its test once to be caught.
  target_compile_options(kd_sim_kernels_${name} PRIVATE ${KD_TEST_OPTIMIZE})
  add_executable(mutant_${name} $<TARGET_OBJECTS:kd_sim_test_${family}>)
  target_link_libraries(mutant_${name} PRIVATE kd_sim_kernels_${name} kd_sim_main)
  add_test(NAME sim.mutant.${name}
    COMMAND ${CMAKE_COMMAND} -DBINARY=$<TARGET_FILE:mutant_${name}> -DFILTER=${filter} -DEXPECT=${expect}
            -DNAME=${name} -P ${CMAKE_CURRENT_SOURCE_DIR}/expect_caught.cmake)
  set_tests_properties(sim.mutant.${name} PROPERTIES LABELS sim ENVIRONMENT "KDSIM_SCHEDULE=in-order" TIMEOUT 120)
endfunction()

# kd_sim_engine_mutant(NAME FILE ORIGINAL REPLACEMENT FILTER EXPECT): the same
# for src/gpu/FILE (a source or a header), run by tests/pipeline_gpu_test.cpp.
# Every engine file is copied next to the mutated one, so the engine's
# #include "..." of its own headers finds the mutant first.
function(kd_sim_engine_mutant name file original replacement filter expect)
  set(dir ${CMAKE_CURRENT_BINARY_DIR}/mutants/${name})
  file(GLOB engine_files ${PROJECT_SOURCE_DIR}/src/gpu/*.cu ${PROJECT_SOURCE_DIR}/src/gpu/*.cpp ${PROJECT_SOURCE_DIR}/src/gpu/*.h)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${engine_files})
  file(COPY ${engine_files} DESTINATION ${dir})
  file(READ ${PROJECT_SOURCE_DIR}/src/gpu/${file} text)
  string(FIND "${text}" "${original}" first)
  string(FIND "${text}" "${original}" last REVERSE)
  if(first EQUAL -1 OR NOT first EQUAL last)
    message(FATAL_ERROR "mutant ${name}: src/gpu/${file} must contain exactly once:\n  ${original}\n"
                        "update the mutant in tests/sim/mutation.cmake to the engine's current code")
  endif()
  string(REPLACE "${original}" "${replacement}" text "${text}")
  file(CONFIGURE OUTPUT ${dir}/${file} CONTENT "${text}" @ONLY)
  set(sources)
  foreach(source ${KD_SIM_ENGINE_SOURCES})
    get_filename_component(source_name ${source} NAME)
    list(APPEND sources ${dir}/${source_name})
  endforeach()
  kd_sim_engine_library(kd_sim_engine_${name} ${sources})
  target_compile_options(kd_sim_engine_${name} PRIVATE ${KD_TEST_OPTIMIZE})
  add_executable(mutant_${name} $<TARGET_OBJECTS:kd_sim_test_pipeline>)
  target_link_libraries(mutant_${name} PRIVATE kd_sim_engine_${name} kd_sim_main)
  add_test(NAME sim.mutant.${name}
    COMMAND ${CMAKE_COMMAND} -DBINARY=$<TARGET_FILE:mutant_${name}> -DFILTER=${filter} -DEXPECT=${expect}
            -DNAME=${name} -P ${CMAKE_CURRENT_SOURCE_DIR}/expect_caught.cmake)
  set_tests_properties(sim.mutant.${name} PROPERTIES LABELS sim ENVIRONMENT "KDSIM_SCHEDULE=in-order" TIMEOUT 120)
endfunction()

# A missing __syncthreads: the next k-tile overwrites shared tiles still being read.
kd_sim_mutant(missing_syncthreads dense
  "    __syncthreads();  // the next iteration overwrites the tiles"
  "    // (mutant: the barrier before the tiles are overwritten is gone)"
  "*CustomImplementationMatchesReference*" "shared-memory race")
# Off by one at the tile edge: the row just past the matrix is loaded.
kd_sim_mutant(tile_edge_off_by_one dense
  "stage[i] = gr < rows && gk < k_end"
  "stage[i] = gr <= rows && gk < k_end"
  "*CustomImplementationMatchesReference*" "out-of-bounds global read")
# A wrong shuffle offset in the block reduction's butterfly.
kd_sim_mutant(wrong_shuffle_offset softmax_kl
  "v[i] = op(v[i], __shfl_xor_sync(kFullMask, v[i], offset));"
  "v[i] = op(v[i], __shfl_xor_sync(kFullMask, v[i], offset - 1));"
  "*GathersTeacherRows*" "Failure")
# A wrong lane mask: lanes 16-31 shuffle with a mask that leaves them out.
kd_sim_mutant(wrong_lane_mask metrics
  "const float other = __shfl_xor_sync(0xffffffffu, best, offset);"
  "const float other = __shfl_xor_sync(0x0000ffffu, best, offset);"
  "*ArgmaxMatchesReference*" "leaves the lane out")
# A misindexed cluster rank when the blocks of a cluster gather their sums.
kd_sim_mutant(misindexed_cluster_rank softmax_kl
  "cluster.map_shared_rank(block_sums, r);"
  "cluster.map_shared_rank(block_sums, r + 1);"
  "*GathersTeacherRows*" "asks for rank [0-9]+ of a cluster of")
# Divergent barrier: threads without a row leave before the block's last __syncthreads.
kd_sim_mutant(divergent_barrier softmax_kl
  "  if (!p.grad) return;"
  "  if (!p.grad || tid >= rows) return;"
  "*MatchesReferenceOnSpecShapes*" "barrier divergence or deadlock")
# A shared slot left unwritten, then read by the reduction tree.
kd_sim_mutant(uninitialised_shared_read softmax_kl
  "  partial[threadIdx.x] = acc;"
  "  if (acc != 0) partial[threadIdx.x] = acc;"
  "*MeanReduce*" "uninitialised shared memory read")
# The hint's row sums with a wrong butterfly offset: lanes add the wrong partners' sums.
kd_sim_mutant(hint_wrong_shuffle_offset hint
  "for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);"
  "for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset - 1);"
  "*HintGpu.MatchesReference*" "Failure")
# The backward hook without the ReLU mask: the hint's gradient reaches units the ReLU switched off.
kd_sim_mutant(hint_gradient_skips_relu_mask hint
  "if (mask_by == nullptr || mask_by[i] > 0.0f) dx[i] += g[i];"
  "dx[i] += g[i];"
  "*AddGradientPassesTheMask*" "Failure")
# Host-side misuse of the libraries, caught by the simulated cuDNN and cuBLAS.
# The plan's shared workspace sized for the forward algorithm only: a backward
# algorithm that needs more is refused (CUDNN_STATUS_BAD_PARAM).
kd_sim_mutant(conv_workspace_forward_only conv
  "workspace_bytes = std::max({workspace_bytes, bwd_data_choice.workspace_bytes, bwd_filter_choice.workspace_bytes});"
  "workspace_bytes = std::max({workspace_bytes});"
  "*MatchesReference*" "bytes of workspace, got")
# dX's GEMM with the leading dimension of dy for w: below m = in when out < in
# (CUBLAS_STATUS_INVALID_VALUE, 7), a wrong product otherwise.
kd_sim_mutant(cublas_dx_wrong_lda dense
  "in, b, out, &one, w, in, dy, out, &zero, dx,"
  "in, b, out, &one, w, out, dy, out, &zero, dx,"
  "*CublasImplementationMatchesReference*" "cuBLAS status 7")
# dW's GEMM with x and dy's transposes swapped: the simulated cuBLAS reads
# past x (status 13, execution failed) or refuses an lda below k (status 7).
kd_sim_mutant(cublas_dw_transposed dense
  "CUBLAS_OP_N, CUBLAS_OP_T, in, out, b"
  "CUBLAS_OP_T, CUBLAS_OP_N, in, out, b"
  "*CublasImplementationMatchesReference*" "cuBLAS status (7|13)")
# The input descriptor with H and W swapped: for the 11x9 and 8x13 test shapes
# cuDNN's output shape disagrees with the plan's, which the plan checks.
kd_sim_mutant(cudnn_input_hw_swapped conv
  "s.n, s.in_c, s.h, s.w));"
  "s.n, s.in_c, s.w, s.h));"
  "*MatchesReference*" "cuDNN computes output")
# The filter descriptor with K and C swapped: its C no longer matches the
# input's channels wherever in_c != out_c (CUDNN_STATUS_BAD_PARAM).
kd_sim_mutant(cudnn_filter_kc_swapped conv
  "s.out_c, s.in_c, s.k, s.k"
  "s.in_c, s.out_c, s.k, s.k"
  "*MatchesReference*" "different channel counts")
# The shared workspace one byte short of what the chosen algorithms asked for.
kd_sim_mutant(conv_workspace_one_byte_short conv
  "workspace.allocate(workspace_bytes, \"convolution workspace"
  "workspace.allocate(workspace_bytes - 1, \"convolution workspace"
  "*MatchesReference*" "bytes of workspace, got")
# Engine mutants, run by the pipeline tests on the simulated engine.
# keep_best copying the other way: the kept parameters are never written.
kd_sim_engine_mutant(keep_best_copies_backwards cuda_model.cu
  "cudaMemcpyAsync(best_.data(), params_.data(), params_.bytes()"
  "cudaMemcpyAsync(params_.data(), best_.data(), params_.bytes()"
  "*KeptBestParametersAreRestoredExactly*" "Failure")
# Parameters read on the host without the stream synchronisation: the host
# sees the simulator's poison (NaN) where the uploaded parameters should be.
kd_sim_engine_mutant(host_read_without_sync cuda_model.cu
  "  copy_to_host(aligned.data(), device.data(), aligned.size(), stream);"
  "  KD_CUDA_CHECK(cudaMemcpyAsync(aligned.data(), device.data(), aligned.size() * sizeof(float), cudaMemcpyDeviceToHost, stream));"
  "*OddParameterCountsMatchCpu*" "parameters do not round-trip")
# The epoch buffers reallocated while graphs captured with their old addresses
# are kept: the replays write through freed memory.
kd_sim_engine_mutant(graph_outlives_its_buffers cuda_model.cu
  "  graphs_.clear();\n"
  ""
  "*GraphsAreRecapturedWhenTheEpochGrows*" "inside a freed")
