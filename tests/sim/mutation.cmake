# Mutation test of the CUDA simulator: each mutant is a copy of one kernel
# source with one planted bug, written into the build tree at configure time
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
  add_executable(mutant_${name} $<TARGET_OBJECTS:kd_sim_test_${family}>)
  target_link_libraries(mutant_${name} PRIVATE kd_sim_kernels_${name} kd_sim_main)
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
