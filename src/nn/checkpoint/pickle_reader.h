// A non-executing pickle reader for what torch.save writes into a checkpoint's data.pkl
// (protocol 2): dicts, OrderedDicts, lists, tuples, ints, floats, strings, booleans, None,
// and tensors rebuilt by torch._utils._rebuild_tensor_v2 on persistent storage references.
//
// Nothing named in the pickle is ever looked up or called: GLOBAL / STACK_GLOBAL names are
// matched against a fixed allow-list and become inert values, and REDUCE on them builds the
// one thing each stands for (an empty dict, a tensor description). Any other opcode or name
// is an error. Values live in an arena owned by the result, so a pickle that makes a list
// contain itself neither leaks nor recurses: nothing here walks values recursively.
//
// Tensors are only described here (storage key, dtype, offset, size, stride); pth_reader.cc
// reads the storages from the zip and checks the views against them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace tr::nn::pickle {

// Index of a value in Pickle::values.
using ValueRef = uint32_t;

enum class Kind : uint8_t {
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,
  kTuple,
  kList,
  kDict,
  kGlobal,   // an allow-listed name, not yet called
  kStorage,  // a persistent storage reference ('storage', type, key, location, numel)
  kTensor,   // the result of _rebuild_tensor_v2 / _rebuild_parameter
};
const char* kind_name(Kind k);

// The allow-list: every name a GLOBAL may refer to.
enum class Global : uint8_t {
  kOrderedDict,                // collections.OrderedDict
  kRebuildTensorV2,            // torch._utils._rebuild_tensor_v2
  kRebuildParameter,           // torch._utils._rebuild_parameter
  kRebuildParameterWithState,  // torch._utils._rebuild_parameter_with_state
  kStorageType,                // torch.<Float|Half|...>Storage; Value::storage says which
};

// Element types of torch's storage classes (torch.FloatStorage, torch.HalfStorage, ...).
enum class StorageType : uint8_t {
  kFloat32,
  kFloat16,
  kBFloat16,
  kFloat64,
  kInt64,
  kInt32,
  kInt16,
  kInt8,
  kUint8,
  kBool,
};
size_t storage_elem_size(StorageType t);
const char* storage_type_name(StorageType t);  // "FloatStorage"
// True for the types read as float32 tensors (fp32, fp16, bf16, fp64).
bool storage_is_float(StorageType t);

struct Value {
  Kind kind = Kind::kNone;
  Global global = Global::kOrderedDict;         // kGlobal
  StorageType storage = StorageType::kFloat32;  // kGlobal kStorageType, kStorage
  bool b = false;                               // kBool
  int64_t i = 0;                                // kInt; kStorage: numel; kTensor: storage offset
  double f = 0;                                 // kFloat
  std::string s;                                // kString; kStorage: the key (data/<key>)
  // kTuple / kList: the items; kDict: key, value, key, value, ... in insertion order
  // (a repeated key is kept twice; readers take the last); kTensor: [storage].
  std::vector<ValueRef> items;
  Shape size, stride;  // kTensor
};

struct Pickle {
  std::vector<Value> values;
  ValueRef root = 0;

  const Value& at(ValueRef r) const { return values[r]; }
};

// Parses `bytes` (a whole data.pkl). Errors are kBadInput, one line, starting with `name`.
Result<Pickle> parse(std::string_view bytes, const std::string& name);

}  // namespace tr::nn::pickle
