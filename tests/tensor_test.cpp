// Tensor construction, views (which share storage and only change shape, strides and offset), and the
// errors impossible views raise.
#include "tensor/tensor.h"

#include <gtest/gtest.h>

#include <memory>
#include <numeric>
#include <vector>

#include "backend/ops.h"
#include "util/error.h"

namespace canvas {
namespace {

// x[i][j][k] = 30 i + 6 j + k, so every element names its own position.
Tensor iota_tensor() {
  std::vector<float> values(4 * 5 * 6);
  std::iota(values.begin(), values.end(), 0.0f);
  return Tensor::from_floats(values, {4, 5, 6});
}

TEST(Tensor, EmptyZerosAndFromValues) {
  EXPECT_FALSE(Tensor().defined());
  Tensor t = Tensor::empty({2, 3, 4}, DType::F32);
  EXPECT_TRUE(t.defined());
  EXPECT_EQ(t.strides(), (Strides{12, 4, 1}));
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 96);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_TRUE(t.device().is_cpu());
  EXPECT_EQ(Tensor::zeros({3, 5}, DType::BF16).to_floats(), std::vector<float>(15, 0.0f));
  Tensor ints = Tensor::from_ints(std::vector<int64_t>{4, -2, 7}, {3}, DType::I32);
  EXPECT_EQ(ints.dtype(), DType::I32);
  EXPECT_EQ(ints.data<int32_t>()[1], -2);
  EXPECT_THROW(Tensor::from_floats(std::vector<float>{1, 2, 3}, {2, 2}), Error);
  EXPECT_THROW(Tensor::from_ints(std::vector<int64_t>{1}, {1}, DType::F32), Error);
  EXPECT_THROW(Tensor::empty({2, -1}, DType::F32), Error);
}

TEST(Tensor, SliceAndSelectShareStorage) {
  Tensor x = iota_tensor();
  Tensor middle = x.slice(1, 1, 4);
  EXPECT_EQ(middle.shape(), (Shape{4, 3, 6}));
  EXPECT_EQ(middle.strides(), (Strides{30, 6, 1}));
  EXPECT_EQ(middle.buffer(), x.buffer());
  EXPECT_EQ(middle.byte_offset(), 6 * 4);
  EXPECT_FALSE(middle.is_contiguous());
  std::vector<float> values = middle.to_floats();
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 3; ++j) {
      for (int k = 0; k < 6; ++k) EXPECT_EQ(values[(i * 3 + j) * 6 + k], 30 * i + 6 * (j + 1) + k);
    }
  }
  Tensor column = x.select(2, 3);
  EXPECT_EQ(column.shape(), (Shape{4, 5}));
  EXPECT_EQ(column.strides(), (Strides{30, 6}));
  EXPECT_EQ(column.to_floats()[7], 30 * 1 + 6 * 2 + 3);
  // A slice of a slice keeps accumulating the offset.
  EXPECT_EQ(middle.slice(0, 2, 3).select(1, 1).to_floats()[0], 30 * 2 + 6 * 2);
}

TEST(Tensor, PermuteTransposeUnsqueezeSqueeze) {
  Tensor x = iota_tensor();
  Tensor permuted = x.permute({2, 0, 1});
  EXPECT_EQ(permuted.shape(), (Shape{6, 4, 5}));
  EXPECT_EQ(permuted.strides(), (Strides{1, 30, 6}));
  EXPECT_FALSE(permuted.is_contiguous());
  EXPECT_EQ(permuted.to_floats()[(5 * 4 + 3) * 5 + 2], 30 * 3 + 6 * 2 + 5);
  Tensor transposed = x.transpose(0, -1);
  EXPECT_EQ(transposed.shape(), (Shape{6, 5, 4}));
  EXPECT_EQ(transposed.strides(), (Strides{1, 6, 30}));
  Tensor inner = x.unsqueeze(1);
  EXPECT_EQ(inner.shape(), (Shape{4, 1, 5, 6}));
  EXPECT_TRUE(inner.is_contiguous());
  Tensor last = x.unsqueeze(3);
  EXPECT_EQ(last.shape(), (Shape{4, 5, 6, 1}));
  EXPECT_EQ(last.strides().back(), 1);
  EXPECT_EQ(inner.squeeze(1).shape(), x.shape());
  EXPECT_EQ(last.squeeze(-1).strides(), x.strides());
}

TEST(Tensor, ViewAndReshape) {
  Tensor x = iota_tensor();
  Tensor rows = x.view({-1, 6});
  EXPECT_EQ(rows.shape(), (Shape{20, 6}));
  EXPECT_EQ(rows.buffer(), x.buffer());
  EXPECT_EQ(x.view({2, -1, 3}).shape(), (Shape{2, 20, 3}));
  EXPECT_EQ(x.reshape({120}).buffer(), x.buffer());
  // Reshaping a non-contiguous view copies it into logical order first.
  Tensor permuted = x.permute({2, 0, 1});
  Tensor flat = permuted.reshape({6, 20});
  EXPECT_NE(flat.buffer(), x.buffer());
  EXPECT_TRUE(flat.is_contiguous());
  EXPECT_EQ(flat.to_floats(), permuted.to_floats());
}

TEST(Tensor, ImpossibleViewsThrow) {
  Tensor x = iota_tensor();
  EXPECT_THROW(x.permute({2, 0, 1}).view({-1}), Error);
  EXPECT_THROW(x.view({-1, -1}), Error);
  EXPECT_THROW(x.view({7, -1}), Error);
  EXPECT_THROW(x.view({5, 5}), Error);
  EXPECT_THROW(x.slice(1, 3, 6), Error);
  EXPECT_THROW(x.slice(1, 3, 2), Error);
  EXPECT_THROW(x.select(0, 4), Error);
  EXPECT_THROW(x.permute({0, 0, 1}), Error);
  EXPECT_THROW(x.permute({0, 1}), Error);
  EXPECT_THROW(x.squeeze(0), Error);
  EXPECT_THROW(x.dim(3), Error);
  EXPECT_THROW(x.dim(-4), Error);
  EXPECT_THROW(x.unsqueeze(5), Error);
  EXPECT_THROW(Tensor::strided_view(x, {2, 2}, {1}), Error);
  EXPECT_THROW(Tensor::from_buffer(x.buffer(), {1000}, DType::F32), Error);
  EXPECT_THROW(Tensor::from_buffer(x.buffer(), {1}, DType::F32, -4), Error);
  EXPECT_THROW(Tensor().raw_data(), Error);
}

TEST(Tensor, ConversionsAndBroadcastViews) {
  Tensor x = iota_tensor();
  EXPECT_EQ(x.to(DType::F32).buffer(), x.buffer());
  EXPECT_EQ(x.to(Device::cpu()).buffer(), x.buffer());
  Tensor narrow = ops::scale(x, 1.001f).to(DType::BF16);
  EXPECT_EQ(narrow.dtype(), DType::BF16);
  EXPECT_EQ(narrow.to_floats()[100], bf16_to_f32(f32_to_bf16(100 * 1.001f)));
  Tensor row = Tensor::from_floats(std::vector<float>{1, 2, 3}, {1, 3});
  Tensor repeated = Tensor::strided_view(row, {4, 3}, {0, 1});
  EXPECT_FALSE(repeated.is_contiguous());
  EXPECT_EQ(repeated.to_floats(), (std::vector<float>{1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3}));
}

TEST(Tensor, MappedBuffersAreReadOnly) {
  auto storage = std::make_shared<std::vector<float>>(std::vector<float>{1, 2, 3, 4, 5, 6});
  auto buffer = std::make_shared<Buffer>(storage, storage->data(), 24, Device::cpu());
  Tensor mapped = Tensor::from_buffer(buffer, {2, 2}, DType::F32, 8);
  EXPECT_FALSE(mapped.buffer()->writable());
  EXPECT_EQ(mapped.to_floats(), (std::vector<float>{3, 4, 5, 6}));
  Tensor source = Tensor::zeros({2, 2}, DType::F32);
  EXPECT_THROW(ops::copy_into(source, mapped), Error);
}

TEST(Tensor, BlockQuantizedTensorsSliceOnlyWholeRows) {
  Tensor q = Tensor::zeros({4, 64}, DType::Q8_0);
  EXPECT_EQ(q.nbytes(), 8 * 34);
  Tensor rows = q.slice(0, 1, 3);
  EXPECT_EQ(rows.shape(), (Shape{2, 64}));
  EXPECT_EQ(rows.byte_offset(), 2 * 34);
  EXPECT_THROW(q.slice(1, 0, 32), Error);
  EXPECT_THROW(q.permute({1, 0}), Error);
  EXPECT_THROW(q.transpose(0, 1), Error);
  EXPECT_THROW(Tensor::strided_view(q, {4, 64}, {64, 1}), Error);
  EXPECT_THROW(q.to(DType::F32), Error);
}

}  // namespace
}  // namespace canvas
