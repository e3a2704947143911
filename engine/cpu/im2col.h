// im2col and col2im: the data rearrangement that turns a convolution into a matrix multiply.
//
// One image has C planes of H x W. A kH x kW window with stride (sH, sW), zero padding (pH, pW) and
// dilation (dH, dW) visits OH x OW positions. The column matrix of the image has
//   rows = C kH kW   row r = (c, i, j) = (r / (kH kW), r / kW % kH, r % kW): channel c, kernel tap (i, j)
//   cols = OH OW     column p = (oh, ow) = (p / OW, p % OW): one output position
// with  col[(c, i, j), (oh, ow)] = image[c, oh sH - pH + i dH, ow sW - pW + j dW]  (0 in the padding).
// Column p is the receptive field of output p, in the same order as a flattened [C, kH, kW] filter.
//
// col2im is the adjoint (transpose) of im2col: each entry of the column matrix is added back into the
// image element it was read from, so an element under several windows receives the sum. It accumulates
// (+=) into `image`; zero the image first for a plain transpose.
//
// Both work on a block of the column matrix (rows [row_begin, row_end), columns [col_begin, col_end)),
// stored row-major with a row stride `ld` >= col_end - col_begin (the overloads without ld store it
// densely). A stride wider than the block lets a caller put the blocks of several images side by side. Blocks
// let a caller bound its buffers for large images and give each thread its own slice of the work. col2im of a
// block of rows touches only the channels those rows belong to. Called outside a parallel region, both share
// the block's channels among OpenMP threads; inside one, they run serially.
#pragma once
#include <cstdint>

namespace icd::cpu {

struct Im2colGeometry {
  int64_t channels = 0, height = 0, width = 0;  // the input image: C x H x W, contiguous
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t padding_h = 0, padding_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t out_h = 0, out_w = 0;  // OH, OW: consistent with the above (the caller computes them)

  int64_t column_rows() const { return channels * kernel_h * kernel_w; }
  int64_t column_cols() const { return out_h * out_w; }
};

struct ColumnBlock {
  int64_t row_begin = 0, row_end = 0;  // rows of the column matrix, within [0, column_rows()]
  int64_t col_begin = 0, col_end = 0;  // columns (flattened output positions), within [0, column_cols()]
};

// The whole column matrix of `geometry`.
inline ColumnBlock whole_matrix(const Im2colGeometry& geometry) {
  return {0, geometry.column_rows(), 0, geometry.column_cols()};
}

// columns = the block of im2col(image), row r of the block at columns + r ld.
template <class T>
void im2col(const T* image, const Im2colGeometry& geometry, const ColumnBlock& block, T* columns, int64_t ld);

// image += col2im(columns), where `columns` holds the block laid out as im2col writes it (row stride ld).
template <class T>
void col2im(const T* columns, const Im2colGeometry& geometry, const ColumnBlock& block, T* image, int64_t ld);

template <class T>
void im2col(const T* image, const Im2colGeometry& geometry, const ColumnBlock& block, T* columns) {
  im2col(image, geometry, block, columns, block.col_end - block.col_begin);
}

template <class T>
void col2im(const T* columns, const Im2colGeometry& geometry, const ColumnBlock& block, T* image) {
  col2im(columns, geometry, block, image, block.col_end - block.col_begin);
}

}  // namespace icd::cpu
