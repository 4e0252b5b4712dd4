// Declarations of the CPU kernels (float32, contiguous inputs), bound to Python in bindings.cpp.
// norms.cpp: batch/global norm (forward, backward), cross norm (forward, backward, double backward), RMS norm; the
// halves of the batch-dependent ones (partial sums, apply) that synchronised statistics all-reduce between.
// softplus.cpp: softplus and its first and second derivatives. denormals.cpp: FTZ/DAZ in the OpenMP team.
// local_sum.cpp: the sum of a small tensor over the processes of one machine through shared memory.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <vector>

std::vector<torch::Tensor> moment_sums(torch::Tensor x, bool row_stats);
torch::Tensor scale_shift_apply(torch::Tensor x, torch::Tensor w, torch::Tensor b, torch::Tensor mean,
                                torch::Tensor rstd, bool global_stats);
torch::Tensor scale_shift_backward_sums(torch::Tensor g, torch::Tensor x, torch::Tensor mean, bool global_stats);
torch::Tensor scale_shift_backward_apply(torch::Tensor g, torch::Tensor x, torch::Tensor w, torch::Tensor mean,
                                         torch::Tensor rstd, torch::Tensor sums, double count, bool global_stats);
torch::Tensor cross_norm_apply(torch::Tensor x, torch::Tensor w, torch::Tensor b, torch::Tensor row_mean,
                               torch::Tensor row_var, torch::Tensor col_mean, torch::Tensor col_var, double count,
                               double eps);
std::vector<torch::Tensor> cross_norm_backward_sums(torch::Tensor g, torch::Tensor x, torch::Tensor w,
                                                    torch::Tensor row_mean, torch::Tensor row_var,
                                                    torch::Tensor col_mean, torch::Tensor col_var, double count,
                                                    double eps);
torch::Tensor cross_norm_backward_apply(torch::Tensor g, torch::Tensor x, torch::Tensor w, torch::Tensor row_mean,
                                        torch::Tensor row_var, torch::Tensor col_mean, torch::Tensor col_var,
                                        torch::Tensor row_b, torch::Tensor row_p, torch::Tensor sums,
                                        torch::Tensor work, double count, double eps);
std::vector<torch::Tensor> scale_shift_forward(torch::Tensor x, torch::Tensor w, torch::Tensor b, double eps,
                                               bool global_stats);
std::vector<torch::Tensor> scale_shift_backward(torch::Tensor g, torch::Tensor x, torch::Tensor w, torch::Tensor mean,
                                                torch::Tensor rstd, bool global_stats);
std::vector<torch::Tensor> cross_norm_forward(torch::Tensor x, torch::Tensor w, torch::Tensor b, double eps);
std::vector<torch::Tensor> cross_norm_backward(torch::Tensor g, torch::Tensor x, torch::Tensor w,
                                               torch::Tensor row_mean, torch::Tensor row_var, torch::Tensor col_mean,
                                               torch::Tensor col_var, double eps);
std::vector<torch::Tensor> cross_norm_double_backward(torch::Tensor v, torch::Tensor g, torch::Tensor x,
                                                      torch::Tensor w, torch::Tensor row_mean, torch::Tensor row_var,
                                                      torch::Tensor col_mean, torch::Tensor col_var, double eps);
std::vector<torch::Tensor> cross_norm_double_backward_sums(torch::Tensor v, torch::Tensor g, torch::Tensor x,
                                                           torch::Tensor w, torch::Tensor row_mean,
                                                           torch::Tensor row_var, torch::Tensor col_mean,
                                                           torch::Tensor col_var, double count, double eps);
std::vector<torch::Tensor> cross_norm_double_backward_sums2(torch::Tensor v, torch::Tensor g, torch::Tensor x,
                                                            torch::Tensor w, torch::Tensor row_mean,
                                                            torch::Tensor row_var, torch::Tensor col_mean,
                                                            torch::Tensor col_var, torch::Tensor rows1,
                                                            torch::Tensor sums1, torch::Tensor work, double count,
                                                            double eps);
torch::Tensor cross_norm_double_backward_apply(torch::Tensor v, torch::Tensor g, torch::Tensor x, torch::Tensor w,
                                               torch::Tensor row_mean, torch::Tensor row_var, torch::Tensor col_mean,
                                               torch::Tensor col_var, torch::Tensor rows1, torch::Tensor rows2,
                                               torch::Tensor sums1, torch::Tensor sums2, torch::Tensor work,
                                               double count, double eps);
std::vector<torch::Tensor> rms_norm_forward(torch::Tensor x, torch::Tensor w, torch::Tensor b, double eps);
std::vector<torch::Tensor> rms_norm_backward(torch::Tensor g, torch::Tensor x, torch::Tensor w, torch::Tensor inv);
torch::Tensor softplus_forward(torch::Tensor x, double beta);
torch::Tensor softplus_backward(torch::Tensor g, torch::Tensor x, double beta);
std::vector<torch::Tensor> softplus_double_backward(torch::Tensor v, torch::Tensor g, torch::Tensor x, double beta);
int64_t flush_denormals(bool on);
int64_t local_sum_region_bytes(int64_t world, int64_t capacity);
void local_sum_register(torch::Tensor region, int64_t rank);
bool local_sum_peers_alive(torch::Tensor region, int64_t world);
void local_sum_(torch::Tensor t, torch::Tensor region, int64_t rank, int64_t world, int64_t capacity,
                int64_t generation, double timeout_s);
