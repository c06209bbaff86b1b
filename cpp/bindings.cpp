// The Python face of the kernels: tinyconv._kernels, re-exported by tinyconv.ops.
//
// Each function checks its arguments once (type, dtype, layout, shape), then releases the GIL
// and calls a kernel. Nothing is copied or converted: an array that is not already float32 and
// C-contiguous is refused with a message naming the argument, what was expected and what came.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "conv2d.h"
#include "cpu.h"
#include "elementwise.h"
#include "gemm.h"
#include "linear.h"
#include "maxpool2d.h"
#include "softmax.h"

namespace py = pybind11;

namespace {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& shape) {
  std::ostringstream text;
  text << "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    text << (i ? ", " : "") << shape[i];
  }
  text << (shape.size() == 1 ? ",)" : ")");
  return text.str();
}

Shape shape_of(const py::array& a) {
  return Shape(a.shape(), a.shape() + a.ndim());
}

std::string type_name(py::handle obj) {
  return py::str(py::type::handle_of(obj).attr("__name__"));
}

// The array behind `obj`, which must be an ndarray of `dtype` in C order.
py::array checked_array(py::handle obj, const char* name, const py::dtype& dtype) {
  std::string want = py::str(dtype);
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(std::string(name) + " must be a numpy.ndarray of " + want + ", got " +
                         type_name(obj));
  }
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(dtype)) {
    throw py::type_error(std::string(name) + " must have dtype " + want + ", got " +
                         std::string(py::str(a.dtype())) + " (tinyconv never converts)");
  }
  if (!(a.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + " must be C-contiguous, got an array with strides " +
                          std::string(py::str(a.attr("strides"))) +
                          " (use numpy.ascontiguousarray)");
  }
  return a;
}

py::array float_array(py::handle obj, const char* name) {
  return checked_array(obj, name, py::dtype::of<float>());
}

void expect_ndim(const py::array& a, const char* name, int ndim, const char* layout) {
  if (a.ndim() != ndim) {
    throw py::value_error(std::string(name) + " must be " + std::to_string(ndim) + "-D " +
                          layout + ", got shape " + shape_str(shape_of(a)));
  }
}

void expect_shape(const py::array& a, const char* name, const Shape& want) {
  if (shape_of(a) != want) {
    throw py::value_error(std::string(name) + " must have shape " + shape_str(want) +
                          ", got " + shape_str(shape_of(a)));
  }
}

// Whether the bytes of two arrays could overlap.
bool overlaps(const py::array& a, const py::array& b) {
  if (a.nbytes() == 0 || b.nbytes() == 0) return false;
  auto a0 = reinterpret_cast<uintptr_t>(a.data());
  auto b0 = reinterpret_cast<uintptr_t>(b.data());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

// The product of sizes, refusing one that does not fit in int64 (or in the address space).
int64_t checked_product(const Shape& shape, const char* what) {
  int64_t total = 1;
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(total, d, &total) ||
        total > std::numeric_limits<int64_t>::max() / 8) {
      throw py::value_error(std::string(what) + " of shape " + shape_str(shape) +
                            " has more elements than can be addressed");
    }
  }
  return total;
}

// The destination array: a new one, or `out` once it is known to fit. `inputs` may not
// overlap it, except the one named by `may_alias` (an op that works in place).
py::array output_array(py::handle out, const Shape& shape,
                       const std::vector<const py::array*>& inputs,
                       const py::array* may_alias = nullptr) {
  checked_product(shape, "the result");
  if (out.is_none()) {
    return py::array(py::dtype::of<float>(), shape);
  }

  py::array o = float_array(out, "out");
  expect_shape(o, "out", shape);
  if (!o.writeable()) {
    throw py::value_error("out must be writeable, got a read-only array");
  }
  for (const py::array* input : inputs) {
    bool same = may_alias && input == may_alias && o.data() == input->data();
    if (!same && overlaps(o, *input)) {
      throw py::value_error("out must not overlap an input array");
    }
  }
  return o;
}

float* data_of(py::array& a) { return static_cast<float*>(a.mutable_data()); }
const float* cdata_of(const py::array& a) { return static_cast<const float*>(a.data()); }

// A stride, padding or kernel size given as one int or an (h, w) pair.
std::pair<int64_t, int64_t> int_pair(py::handle obj, const char* name) {
  auto as_int = [&](py::handle item) {
    if (!py::isinstance<py::int_>(item) || py::isinstance<py::bool_>(item)) {
      throw py::type_error(std::string(name) + " must be an int or a pair of ints, got " +
                           std::string(py::repr(obj)));
    }
    return item.cast<int64_t>();
  };
  if (py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) {
    auto seq = py::reinterpret_borrow<py::sequence>(obj);
    if (seq.size() != 2) {
      throw py::value_error(std::string(name) + " must be an int or a pair of ints, got " +
                            std::string(py::repr(obj)));
    }
    return {as_int(seq[0]), as_int(seq[1])};
  }
  int64_t v = as_int(obj);
  return {v, v};
}

void expect_at_least(std::pair<int64_t, int64_t> v, int64_t low, const char* name) {
  if (v.first < low || v.second < low) {
    throw py::value_error(std::string(name) + " must be at least " + std::to_string(low) +
                          ", got (" + std::to_string(v.first) + ", " +
                          std::to_string(v.second) + ")");
  }
}

// ---------------------------------------------------------------------------------------------
// matmul

py::array matmul(py::handle a_obj, py::handle b_obj, bool trans_a, bool trans_b,
                 py::handle out, bool accumulate) {
  py::array a = float_array(a_obj, "a");
  py::array b = float_array(b_obj, "b");
  expect_ndim(a, "a", 2, "(a matrix)");
  expect_ndim(b, "b", 2, "(a matrix)");

  int64_t m = trans_a ? a.shape(1) : a.shape(0);
  int64_t k = trans_a ? a.shape(0) : a.shape(1);
  int64_t kb = trans_b ? b.shape(1) : b.shape(0);
  int64_t n = trans_b ? b.shape(0) : b.shape(1);
  if (k != kb) {
    throw py::value_error("inner dimensions differ: op(a) is " + shape_str({m, k}) +
                          " and op(b) is " + shape_str({kb, n}));
  }
  if (accumulate && out.is_none()) {
    throw py::value_error("accumulate=True needs out= (the matrix to add into)");
  }
  py::array c = output_array(out, {m, n}, {&a, &b});

  const float* pa = cdata_of(a);
  const float* pb = cdata_of(b);
  float* pc = data_of(c);
  int64_t lda = a.shape(1), ldb = b.shape(1);
  {
    py::gil_scoped_release release;
    tinyconv::gemm_f32(trans_a, trans_b, m, n, k, pa, lda, pb, ldb, pc, n, accumulate);
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// conv2d

tinyconv::Conv2dShape conv2d_shape(const py::array& x, const py::array& w, py::handle stride,
                                   py::handle padding) {
  expect_ndim(x, "x", 4, "(batch, channels, height, width)");
  expect_ndim(w, "weight", 4, "(out_channels, in_channels, kernel_h, kernel_w)");
  auto st = int_pair(stride, "stride");
  auto pad = int_pair(padding, "padding");
  expect_at_least(st, 1, "stride");
  expect_at_least(pad, 0, "padding");
  if (w.shape(1) != x.shape(1)) {
    throw py::value_error("weight has " + std::to_string(w.shape(1)) +
                          " input channels but x has " + std::to_string(x.shape(1)) +
                          " (weight " + shape_str(shape_of(w)) + ", x " +
                          shape_str(shape_of(x)) + ")");
  }

  tinyconv::Conv2dShape s{x.shape(0), x.shape(1), x.shape(2),  x.shape(3),
                          w.shape(0), w.shape(2), w.shape(3),  st.first,
                          st.second,  pad.first,  pad.second};
  int64_t padded_h = 0, padded_w = 0;
  if (__builtin_mul_overflow(pad.first, 2, &padded_h) ||
      __builtin_add_overflow(padded_h, s.in_h, &padded_h) ||
      __builtin_mul_overflow(pad.second, 2, &padded_w) ||
      __builtin_add_overflow(padded_w, s.in_w, &padded_w)) {
    throw py::value_error("padding " + shape_str({pad.first, pad.second}) + " is too large");
  }
  if (s.kernel_h < 1 || s.kernel_w < 1 || s.kernel_h > padded_h || s.kernel_w > padded_w) {
    throw py::value_error("kernel " + shape_str({s.kernel_h, s.kernel_w}) +
                          " must be at least 1 and fit in the padded input " +
                          shape_str({padded_h, padded_w}));
  }
  checked_product({s.out_channels, s.in_channels, s.kernel_h, s.kernel_w, s.out_h(),
                   s.out_w()}, "the convolution's unfolded input");
  checked_product({s.batch, s.out_channels, s.out_h(), s.out_w()}, "the result");
  return s;
}

void expect_bias(const py::array& bias, int64_t out_channels) {
  expect_ndim(bias, "bias", 1, "(out_channels)");
  if (bias.shape(0) != out_channels) {
    throw py::value_error("bias must have " + std::to_string(out_channels) +
                          " elements (one per output channel), got " +
                          std::to_string(bias.shape(0)));
  }
}

py::array conv2d_forward(py::handle x_obj, py::handle w_obj, py::handle bias_obj,
                         py::handle stride, py::handle padding, py::handle out) {
  py::array x = float_array(x_obj, "x");
  py::array w = float_array(w_obj, "weight");
  auto s = conv2d_shape(x, w, stride, padding);
  std::optional<py::array> bias;
  if (!bias_obj.is_none()) {
    bias = float_array(bias_obj, "bias");
    expect_bias(*bias, s.out_channels);
  }
  std::vector<const py::array*> inputs{&x, &w};
  if (bias) inputs.push_back(&*bias);
  py::array y = output_array(out, {s.batch, s.out_channels, s.out_h(), s.out_w()}, inputs);

  const float* pb = bias ? cdata_of(*bias) : nullptr;
  const float *px = cdata_of(x), *pw = cdata_of(w);
  float* py_ = data_of(y);
  {
    py::gil_scoped_release release;
    tinyconv::conv2d_forward(s, px, pw, pb, py_);
  }
  return y;
}

py::tuple conv2d_backward(py::handle x_obj, py::handle w_obj, py::handle dy_obj,
                          py::handle stride, py::handle padding, bool input_grad,
                          bool bias_grad) {
  py::array x = float_array(x_obj, "x");
  py::array w = float_array(w_obj, "weight");
  py::array dy = float_array(dy_obj, "dy");
  auto s = conv2d_shape(x, w, stride, padding);
  expect_shape(dy, "dy", {s.batch, s.out_channels, s.out_h(), s.out_w()});

  py::array dw(py::dtype::of<float>(), shape_of(w));
  std::optional<py::array> dx, db;
  if (input_grad) dx = py::array(py::dtype::of<float>(), shape_of(x));
  if (bias_grad) db = py::array(py::dtype::of<float>(), Shape{s.out_channels});

  const float *px = cdata_of(x), *pw = cdata_of(w), *pdy = cdata_of(dy);
  float* pdx = dx ? data_of(*dx) : nullptr;
  float* pdb = db ? data_of(*db) : nullptr;
  float* pdw = data_of(dw);
  {
    py::gil_scoped_release release;
    tinyconv::conv2d_backward(s, px, pw, pdy, pdx, pdw, pdb);
  }
  return py::make_tuple(dx ? py::object(*dx) : py::none(), dw,
                        db ? py::object(*db) : py::none());
}

// ---------------------------------------------------------------------------------------------
// maxpool2d

tinyconv::Pool2dShape pool2d_shape(const Shape& in, const char* name, py::handle kernel_size,
                                   py::handle stride) {
  if (in.size() != 4) {
    throw py::value_error(std::string(name) +
                          " must be 4-D (batch, channels, height, width), got shape " +
                          shape_str(in));
  }
  checked_product(in, name);
  auto k = int_pair(kernel_size, "kernel_size");
  auto st = stride.is_none() ? k : int_pair(stride, "stride");
  expect_at_least(k, 1, "kernel_size");
  expect_at_least(st, 1, "stride");
  if (k.first > in[2] || k.second > in[3]) {
    throw py::value_error("kernel_size " + shape_str({k.first, k.second}) +
                          " is larger than the input's height and width " +
                          shape_str({in[2], in[3]}));
  }
  if (k.first * k.second >= (int64_t(1) << 31)) {
    throw py::value_error("kernel_size " + shape_str({k.first, k.second}) +
                          " must have fewer than 2^31 positions");
  }
  return {in[0], in[1], in[2], in[3], k.first, k.second, st.first, st.second};
}

py::tuple maxpool2d_forward(py::handle x_obj, py::handle kernel_size, py::handle stride) {
  py::array x = float_array(x_obj, "x");
  auto s = pool2d_shape(shape_of(x), "x", kernel_size, stride);
  Shape out_shape{s.batch, s.channels, s.out_h(), s.out_w()};
  py::array y(py::dtype::of<float>(), out_shape);
  py::array idx(py::dtype::of<int64_t>(), out_shape);

  const float* px = cdata_of(x);
  float* py_ = data_of(y);
  auto* pidx = static_cast<int64_t*>(idx.mutable_data());
  {
    py::gil_scoped_release release;
    tinyconv::maxpool2d_forward(s, px, py_, pidx);
  }
  return py::make_tuple(y, idx);
}

py::array maxpool2d_backward(py::handle dy_obj, py::handle idx_obj, py::handle input_shape,
                             py::handle kernel_size, py::handle stride) {
  py::array dy = float_array(dy_obj, "dy");
  py::array idx = checked_array(idx_obj, "indices", py::dtype::of<int64_t>());
  Shape in;
  try {
    for (py::handle d : py::reinterpret_borrow<py::iterable>(input_shape)) {
      in.push_back(d.cast<int64_t>());
    }
  } catch (const std::exception&) {
    // Not iterable (error_already_set) or an item that is not an int (cast_error).
    throw py::type_error("input_shape must be a sequence of ints, got " +
                         std::string(py::repr(input_shape)));
  }
  for (int64_t d : in) {
    if (d < 0) throw py::value_error("input_shape must not be negative, got " + shape_str(in));
  }
  auto s = pool2d_shape(in, "input_shape", kernel_size, stride);
  Shape out_shape{s.batch, s.channels, s.out_h(), s.out_w()};
  expect_shape(dy, "dy", out_shape);
  expect_shape(idx, "indices", out_shape);
  py::array dx(py::dtype::of<float>(), in);

  // A stray index would write outside its plane, so every one is checked before the kernel.
  const auto* pidx = static_cast<const int64_t*>(idx.data());
  int64_t plane = s.in_h * s.in_w, count = checked_product(out_shape, "indices");
  for (int64_t i = 0; i < count; ++i) {
    if (pidx[i] < 0 || pidx[i] >= plane) {
      throw py::value_error("indices must lie in [0, " + std::to_string(plane) +
                            "), got " + std::to_string(pidx[i]) + " at flat position " +
                            std::to_string(i));
    }
  }

  const float* pdy = cdata_of(dy);
  float* pdx = data_of(dx);
  {
    py::gil_scoped_release release;
    tinyconv::maxpool2d_backward(s, pdy, pidx, pdx);
  }
  return dx;
}

// ---------------------------------------------------------------------------------------------
// relu

py::array relu_forward(py::handle x_obj, py::handle out) {
  py::array x = float_array(x_obj, "x");
  py::array y = output_array(out, shape_of(x), {&x}, &x);

  const float* px = cdata_of(x);
  float* py_ = data_of(y);
  int64_t n = x.size();
  {
    py::gil_scoped_release release;
    tinyconv::relu_forward(n, px, py_);
  }
  return y;
}

py::array relu_backward(py::handle y_obj, py::handle dy_obj, py::handle out) {
  py::array y = float_array(y_obj, "y");
  py::array dy = float_array(dy_obj, "dy");
  expect_shape(dy, "dy", shape_of(y));
  py::array dx = output_array(out, shape_of(y), {&y, &dy}, &dy);

  const float *py_ = cdata_of(y), *pdy = cdata_of(dy);
  float* pdx = data_of(dx);
  int64_t n = y.size();
  {
    py::gil_scoped_release release;
    tinyconv::relu_backward(n, py_, pdy, pdx);
  }
  return dx;
}

// ---------------------------------------------------------------------------------------------
// linear

void check_linear(const py::array& x, const py::array& w) {
  expect_ndim(x, "x", 2, "(batch, in_features)");
  expect_ndim(w, "weight", 2, "(in_features, out_features)");
  if (w.shape(0) != x.shape(1)) {
    throw py::value_error("weight must be (in_features, out_features) with in_features = " +
                          std::to_string(x.shape(1)) + " (x is " + shape_str(shape_of(x)) +
                          "), got " + shape_str(shape_of(w)));
  }
}

py::array linear_forward(py::handle x_obj, py::handle w_obj, py::handle bias_obj,
                         py::handle out) {
  py::array x = float_array(x_obj, "x");
  py::array w = float_array(w_obj, "weight");
  check_linear(x, w);
  int64_t batch = x.shape(0), in = x.shape(1), outf = w.shape(1);
  std::optional<py::array> bias;
  if (!bias_obj.is_none()) {
    bias = float_array(bias_obj, "bias");
    expect_shape(*bias, "bias", {outf});
  }
  std::vector<const py::array*> inputs{&x, &w};
  if (bias) inputs.push_back(&*bias);
  py::array y = output_array(out, {batch, outf}, inputs);

  const float *px = cdata_of(x), *pw = cdata_of(w);
  const float* pb = bias ? cdata_of(*bias) : nullptr;
  float* py_ = data_of(y);
  {
    py::gil_scoped_release release;
    tinyconv::linear_forward(batch, in, outf, px, pw, pb, py_);
  }
  return y;
}

py::tuple linear_backward(py::handle x_obj, py::handle w_obj, py::handle dy_obj,
                          bool input_grad, bool bias_grad) {
  py::array x = float_array(x_obj, "x");
  py::array w = float_array(w_obj, "weight");
  py::array dy = float_array(dy_obj, "dy");
  check_linear(x, w);
  int64_t batch = x.shape(0), in = x.shape(1), outf = w.shape(1);
  expect_shape(dy, "dy", {batch, outf});

  py::array dw(py::dtype::of<float>(), shape_of(w));
  std::optional<py::array> dx, db;
  if (input_grad) dx = py::array(py::dtype::of<float>(), shape_of(x));
  if (bias_grad) db = py::array(py::dtype::of<float>(), Shape{outf});

  const float *px = cdata_of(x), *pw = cdata_of(w), *pdy = cdata_of(dy);
  float* pdx = dx ? data_of(*dx) : nullptr;
  float* pdb = db ? data_of(*db) : nullptr;
  float* pdw = data_of(dw);
  {
    py::gil_scoped_release release;
    tinyconv::linear_backward(batch, in, outf, px, pw, pdy, pdx, pdw, pdb);
  }
  return py::make_tuple(dx ? py::object(*dx) : py::none(), dw,
                        db ? py::object(*db) : py::none());
}

// ---------------------------------------------------------------------------------------------
// softmax and the loss

py::array softmax(py::handle logits_obj, py::handle out) {
  py::array z = float_array(logits_obj, "logits");
  expect_ndim(z, "logits", 2, "(batch, classes)");
  py::array p = output_array(out, shape_of(z), {&z}, &z);

  const float* pz = cdata_of(z);
  float* pp = data_of(p);
  int64_t batch = z.shape(0), classes = z.shape(1);
  {
    py::gil_scoped_release release;
    tinyconv::softmax_forward(batch, classes, pz, pp);
  }
  return p;
}

py::tuple softmax_cross_entropy(py::handle logits_obj, py::handle labels_obj) {
  py::array z = float_array(logits_obj, "logits");
  expect_ndim(z, "logits", 2, "(batch, classes)");
  py::array labels = checked_array(labels_obj, "labels", py::dtype::of<int64_t>());
  int64_t batch = z.shape(0), classes = z.shape(1);
  expect_shape(labels, "labels", {batch});
  if (classes < 1 && batch > 0) {
    throw py::value_error("logits must have at least one class, got shape " +
                          shape_str(shape_of(z)));
  }

  const auto* pl = static_cast<const int64_t*>(labels.data());
  for (int64_t i = 0; i < batch; ++i) {
    if (pl[i] < 0 || pl[i] >= classes) {
      throw py::value_error("labels must lie in [0, " + std::to_string(classes) + "), got " +
                            std::to_string(pl[i]) + " at position " + std::to_string(i));
    }
  }
  py::array dz(py::dtype::of<float>(), shape_of(z));

  const float* pz = cdata_of(z);
  float* pdz = data_of(dz);
  float loss = 0.0f;
  {
    py::gil_scoped_release release;
    loss = tinyconv::softmax_cross_entropy(batch, classes, pz, pl, pdz);
  }
  return py::make_tuple(loss, dz);
}

// ---------------------------------------------------------------------------------------------
// threads and instruction sets

void set_num_threads(py::handle n_obj) {
  if (!py::isinstance<py::int_>(n_obj) || py::isinstance<py::bool_>(n_obj)) {
    throw py::type_error("n must be an int, got " + type_name(n_obj));
  }
  auto n = n_obj.cast<int64_t>();
  if (n < 1 || n > 4096) {
    throw py::value_error("n must be a thread count from 1 to 4096, got " + std::to_string(n));
  }
  tinyconv::set_num_threads(static_cast<int>(n));
}

void set_isa(const std::string& name) {
  if (name == "portable") {
    tinyconv::set_isa(tinyconv::Isa::portable);
  } else if (name == "avx2") {
    tinyconv::set_isa(tinyconv::Isa::avx2);
  } else {
    throw py::value_error("isa must be 'portable' or 'avx2', got '" + name + "'");
  }
}

}  // namespace

PYBIND11_MODULE(_kernels, m) {
  m.doc() = "tinyconv's compiled kernels. Use them through tinyconv.ops.";
  using namespace pybind11::literals;
  py::object none = py::none();

  m.def("matmul", &matmul, "a"_a, "b"_a, py::kw_only(), "trans_a"_a = false,
        "trans_b"_a = false, "out"_a = none, "accumulate"_a = false,
        "op(a) @ op(b) for float32 matrices, op a transpose where asked.\n\n"
        "With accumulate=True the product is added into out.");
  m.def("conv2d_forward", &conv2d_forward, "x"_a, "weight"_a, "bias"_a = none, py::kw_only(),
        "stride"_a = 1, "padding"_a = 0, "out"_a = none,
        "2-D convolution of x (N, C, H, W) with weight (F, C, KH, KW), plus bias (F).");
  m.def("conv2d_backward", &conv2d_backward, "x"_a, "weight"_a, "dy"_a, py::kw_only(),
        "stride"_a = 1, "padding"_a = 0, "input_grad"_a = true, "bias_grad"_a = true,
        "Gradients (dx or None, dweight, dbias or None) of conv2d_forward given dy.");
  m.def("maxpool2d_forward", &maxpool2d_forward, "x"_a, py::kw_only(), "kernel_size"_a = 2,
        "stride"_a = none,
        "Max pooling of x (N, C, H, W): (y, indices), indices within each H*W plane.");
  m.def("maxpool2d_backward", &maxpool2d_backward, "dy"_a, "indices"_a, "input_shape"_a,
        py::kw_only(), "kernel_size"_a = 2, "stride"_a = none,
        "Gradient of max pooling: dy sent to the positions in indices.");
  m.def("relu_forward", &relu_forward, "x"_a, py::kw_only(), "out"_a = none,
        "max(x, 0); out=x works in place.");
  m.def("relu_backward", &relu_backward, "y"_a, "dy"_a, py::kw_only(), "out"_a = none,
        "dy where relu's output y is positive, else 0; out=dy works in place.");
  m.def("linear_forward", &linear_forward, "x"_a, "weight"_a, "bias"_a = none, py::kw_only(),
        "out"_a = none, "x (N, in) @ weight (in, out) + bias (out).");
  m.def("linear_backward", &linear_backward, "x"_a, "weight"_a, "dy"_a, py::kw_only(),
        "input_grad"_a = true, "bias_grad"_a = true,
        "Gradients (dx or None, dweight, dbias or None) of linear_forward given dy.");
  m.def("softmax", &softmax, "logits"_a, py::kw_only(), "out"_a = none,
        "Row-wise softmax of logits (N, classes).");
  m.def("softmax_cross_entropy", &softmax_cross_entropy, "logits"_a, "labels"_a,
        "(mean loss, dlogits) of softmax cross-entropy for int64 labels in [0, classes).");

  m.def("set_num_threads", &set_num_threads, "n"_a, "Use n OpenMP threads in the kernels.");
  m.def("get_num_threads", &tinyconv::num_threads, "The OpenMP threads the kernels use.");
  m.def("isa", [] { return tinyconv::isa_name(tinyconv::active_isa()); },
        "The SIMD path in use: 'avx2' or 'portable'.");
  m.def("set_isa", &set_isa, "name"_a, "Switch the SIMD path (for tests and benchmarks).");
  m.def("cpu_has_avx2_fma", &tinyconv::cpu_has_avx2_fma, "Whether this CPU can run AVX2+FMA.");
  m.def("fma_peak_gflops", &tinyconv::fma_peak_gflops, "threads"_a,
        py::call_guard<py::gil_scoped_release>(),
        "This CPU's measured AVX2 FMA throughput on that many threads, in GFLOP/s.");
#ifdef _OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
}
