#include "nn/checkpoint/pickle_reader.h"

#include <cstring>
#include <new>
#include <unordered_map>

namespace tr::nn::pickle {

namespace {

// Bounds on what one pickle may build. Every opcode consumes at least one byte and creates
// at most one value, so values and work are linear in the input already; these keep the
// stack, the mark stack and the memo from growing past what any state dict needs, so a
// hostile file fails fast with a message instead of exhausting memory.
constexpr size_t kMaxStack = size_t{1} << 22;
constexpr size_t kMaxMarks = size_t{1} << 16;
constexpr size_t kMaxMemo = size_t{1} << 22;
// About 25 values per tensor in torch's pickles: room for 150k tensors, at most ~600 MiB.
constexpr size_t kMaxValues = size_t{1} << 22;
constexpr size_t kMaxGlobalName = 256;  // module or attribute name
constexpr size_t kMaxStorageKey = 256;
constexpr size_t kMaxTensorRank = 64;

struct StorageName {
  const char* name;
  StorageType type;
};
constexpr StorageName kStorageNames[] = {
    {"FloatStorage", StorageType::kFloat32},     {"HalfStorage", StorageType::kFloat16},
    {"BFloat16Storage", StorageType::kBFloat16}, {"DoubleStorage", StorageType::kFloat64},
    {"LongStorage", StorageType::kInt64},        {"IntStorage", StorageType::kInt32},
    {"ShortStorage", StorageType::kInt16},       {"CharStorage", StorageType::kInt8},
    {"ByteStorage", StorageType::kUint8},        {"BoolStorage", StorageType::kBool},
};

class Machine {
 public:
  Machine(std::string_view bytes, const std::string& name) : in_(bytes), name_(name) {}

  Result<Pickle> run() {
    while (true) {
      if (pos_ >= in_.size()) return fail("ends without STOP (truncated?)");
      op_pos_ = pos_;
      if (out_.values.size() >= kMaxValues) {  // each opcode adds at most one value
        return fail("more than " + std::to_string(kMaxValues) + " values");
      }
      const uint8_t op = static_cast<uint8_t>(in_[pos_++]);
      if (op == '.') break;  // STOP
      Status st = step(op);
      if (!st.ok()) return st.error();
    }
    if (stack_.size() != 1 || !marks_.empty()) {
      return fail("STOP with " + std::to_string(stack_.size()) + " values on the stack");
    }
    out_.root = stack_.back();
    return std::move(out_);
  }

 private:
  Error fail(const std::string& what) const {
    return BadInput(name_ + ": " + what + " at byte " + std::to_string(op_pos_));
  }

  // --- reading the opcode arguments -------------------------------------------------------
  bool take(size_t n, const char** p) {
    if (in_.size() - pos_ < n) return false;
    *p = in_.data() + pos_;
    pos_ += n;
    return true;
  }
  Result<uint64_t> read_le(size_t n) {
    const char* p;
    if (!take(n, &p)) return fail("truncated argument");
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint64_t{static_cast<uint8_t>(p[i])} << (8 * i);
    return v;
  }
  Result<std::string> read_line() {
    const size_t end = in_.find('\n', pos_);
    if (end == std::string_view::npos || end - pos_ > kMaxGlobalName) {
      return fail("GLOBAL name without an end of line");
    }
    std::string s(in_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return s;
  }

  // --- the value arena and the stacks -----------------------------------------------------
  ValueRef add(Value v) {
    out_.values.push_back(std::move(v));
    return static_cast<ValueRef>(out_.values.size() - 1);
  }
  Value& val(ValueRef r) { return out_.values[r]; }
  Status push(ValueRef r) {
    if (stack_.size() >= kMaxStack) return fail("stack deeper than " + std::to_string(kMaxStack));
    stack_.push_back(r);
    return Status::Ok();
  }
  // The lowest stack index the current frame may pop to (pickle's MARK starts a new frame).
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  Result<ValueRef> pop() {
    if (stack_.size() <= floor()) return fail("stack underflow");
    ValueRef r = stack_.back();
    stack_.pop_back();
    return r;
  }
  Result<ValueRef> top() {
    if (stack_.size() <= floor()) return fail("stack underflow");
    return stack_.back();
  }
  // The values above the last MARK, which is removed.
  Result<std::vector<ValueRef>> pop_mark() {
    if (marks_.empty()) return fail("no MARK to pop to");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ValueRef> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  Status push_tuple(std::vector<ValueRef> items) {
    Value v;
    v.kind = Kind::kTuple;
    v.items = std::move(items);
    return push(add(std::move(v)));
  }
  Status push_scalar(Kind k, int64_t i = 0, double f = 0, bool b = false) {
    Value v;
    v.kind = k;
    v.i = i;
    v.f = f;
    v.b = b;
    return push(add(std::move(v)));
  }
  Status push_string(std::string s) {
    Value v;
    v.kind = Kind::kString;
    v.s = std::move(s);
    return push(add(std::move(v)));
  }
  Status memo_put(uint64_t index) {
    TR_ASSIGN_OR_RETURN(ValueRef r, top());
    if (memo_.size() >= kMaxMemo && memo_.find(index) == memo_.end()) {
      return fail("memo larger than " + std::to_string(kMaxMemo) + " entries");
    }
    memo_[index] = r;
    return Status::Ok();
  }
  Status memo_get(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) return fail("memo entry " + std::to_string(index) + " is not set");
    return push(it->second);
  }

  // --- the opcodes ------------------------------------------------------------------------
  Status step(uint8_t op) {
    switch (op) {
      case 0x80: {  // PROTO
        TR_ASSIGN_OR_RETURN(uint64_t v, read_le(1));
        if (v < 2 || v > 5) return fail("pickle protocol " + std::to_string(v) + " (expected 2)");
        return Status::Ok();
      }
      case 0x95: {  // FRAME: a length hint only
        TR_ASSIGN_OR_RETURN(uint64_t v, read_le(8));
        (void)v;
        return Status::Ok();
      }
      case '}': {  // EMPTY_DICT
        Value v;
        v.kind = Kind::kDict;
        return push(add(std::move(v)));
      }
      case ']': {  // EMPTY_LIST
        Value v;
        v.kind = Kind::kList;
        return push(add(std::move(v)));
      }
      case ')':  // EMPTY_TUPLE
        return push_tuple({});
      case '(':  // MARK
        if (marks_.size() >= kMaxMarks) return fail("MARKs nested too deep");
        marks_.push_back(stack_.size());
        return Status::Ok();
      case 't': {  // TUPLE
        TR_ASSIGN_OR_RETURN(std::vector<ValueRef> items, pop_mark());
        return push_tuple(std::move(items));
      }
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        const size_t n = op - 0x84u;
        std::vector<ValueRef> items(n);
        for (size_t k = n; k-- > 0;) {
          TR_ASSIGN_OR_RETURN(items[k], pop());
        }
        return push_tuple(std::move(items));
      }
      case 'J': {  // BININT: signed 32-bit
        TR_ASSIGN_OR_RETURN(uint64_t v, read_le(4));
        return push_scalar(Kind::kInt, static_cast<int32_t>(static_cast<uint32_t>(v)));
      }
      case 'K': {  // BININT1
        TR_ASSIGN_OR_RETURN(uint64_t v, read_le(1));
        return push_scalar(Kind::kInt, static_cast<int64_t>(v));
      }
      case 'M': {  // BININT2
        TR_ASSIGN_OR_RETURN(uint64_t v, read_le(2));
        return push_scalar(Kind::kInt, static_cast<int64_t>(v));
      }
      case 0x8a: {  // LONG1: n-byte little-endian two's complement
        TR_ASSIGN_OR_RETURN(uint64_t n, read_le(1));
        if (n > 8) return fail("integer of " + std::to_string(n) + " bytes (more than 64 bits)");
        TR_ASSIGN_OR_RETURN(uint64_t v, read_le(n));
        if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign
        int64_t s;
        std::memcpy(&s, &v, sizeof s);
        return push_scalar(Kind::kInt, s);
      }
      case 'G': {  // BINFLOAT: big-endian double
        const char* p;
        if (!take(8, &p)) return fail("truncated BINFLOAT");
        uint64_t bits = 0;
        for (int k = 0; k < 8; ++k) bits = (bits << 8) | static_cast<uint8_t>(p[k]);
        double d;
        std::memcpy(&d, &bits, sizeof d);
        return push_scalar(Kind::kFloat, 0, d);
      }
      case 'X':    // BINUNICODE
      case 'T':    // BINSTRING (signed length; negative fails the size check below)
      case 0x8c:   // SHORT_BINUNICODE
      case 'U': {  // SHORT_BINSTRING
        const size_t len_bytes = (op == 'X' || op == 'T') ? 4 : 1;
        TR_ASSIGN_OR_RETURN(uint64_t n, read_le(len_bytes));
        if (op == 'T' && (n >> 31)) return fail("negative string length");
        const char* p;
        if (!take(n, &p)) return fail("string of " + std::to_string(n) + " bytes past the end");
        return push_string(std::string(p, n));
      }
      case 0x88:  // NEWTRUE
        return push_scalar(Kind::kBool, 0, 0, true);
      case 0x89:  // NEWFALSE
        return push_scalar(Kind::kBool, 0, 0, false);
      case 'N':  // NONE
        return push_scalar(Kind::kNone);
      case 'q': {  // BINPUT
        TR_ASSIGN_OR_RETURN(uint64_t i, read_le(1));
        return memo_put(i);
      }
      case 'r': {  // LONG_BINPUT
        TR_ASSIGN_OR_RETURN(uint64_t i, read_le(4));
        return memo_put(i);
      }
      case 0x94:  // MEMOIZE
        return memo_put(memo_.size());
      case 'h': {  // BINGET
        TR_ASSIGN_OR_RETURN(uint64_t i, read_le(1));
        return memo_get(i);
      }
      case 'j': {  // LONG_BINGET
        TR_ASSIGN_OR_RETURN(uint64_t i, read_le(4));
        return memo_get(i);
      }
      case 's': {  // SETITEM
        TR_ASSIGN_OR_RETURN(ValueRef value, pop());
        TR_ASSIGN_OR_RETURN(ValueRef key, pop());
        return add_items(Kind::kDict, {key, value});
      }
      case 'u': {  // SETITEMS
        TR_ASSIGN_OR_RETURN(std::vector<ValueRef> items, pop_mark());
        if (items.size() % 2) return fail("SETITEMS with an odd number of values");
        return add_items(Kind::kDict, items);
      }
      case 'a': {  // APPEND
        TR_ASSIGN_OR_RETURN(ValueRef item, pop());
        return add_items(Kind::kList, {item});
      }
      case 'e': {  // APPENDS
        TR_ASSIGN_OR_RETURN(std::vector<ValueRef> items, pop_mark());
        return add_items(Kind::kList, items);
      }
      case 'c': {  // GLOBAL "module\nname\n"
        TR_ASSIGN_OR_RETURN(std::string module, read_line());
        TR_ASSIGN_OR_RETURN(std::string attr, read_line());
        return push_global(module, attr);
      }
      case 0x93: {  // STACK_GLOBAL
        TR_ASSIGN_OR_RETURN(ValueRef attr, pop());
        TR_ASSIGN_OR_RETURN(ValueRef module, pop());
        if (val(module).kind != Kind::kString || val(attr).kind != Kind::kString) {
          return fail("STACK_GLOBAL on values that are not strings");
        }
        return push_global(val(module).s, val(attr).s);
      }
      case 'R':  // REDUCE
        return reduce();
      case 'Q':  // BINPERSID
        return persistent_load();
      case 'b': {  // BUILD: the state of an OrderedDict (_metadata) or a tensor is not needed
        TR_ASSIGN_OR_RETURN(ValueRef state, pop());
        (void)state;
        TR_ASSIGN_OR_RETURN(ValueRef target, top());
        const Kind k = val(target).kind;
        if (k != Kind::kDict && k != Kind::kTensor) {
          return fail(std::string("BUILD on a ") + kind_name(k) + " (only dicts and tensors)");
        }
        return Status::Ok();
      }
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        return fail(std::string("pickle opcode ") + hex +
                    " is not one a state dict uses (refused, nothing is executed)");
      }
    }
  }

  Status add_items(Kind want, const std::vector<ValueRef>& items) {
    TR_ASSIGN_OR_RETURN(ValueRef target, top());
    if (val(target).kind != want) {
      return fail(std::string(want == Kind::kDict ? "SETITEM(S)" : "APPEND(S)") + " on a " +
                  kind_name(val(target).kind));
    }
    auto& dst = val(target).items;
    dst.insert(dst.end(), items.begin(), items.end());
    return Status::Ok();
  }

  Status push_global(const std::string& module, const std::string& attr) {
    Value v;
    v.kind = Kind::kGlobal;
    bool known = false;
    if (module == "collections" && attr == "OrderedDict") {
      v.global = Global::kOrderedDict;
      known = true;
    } else if (module == "torch._utils") {
      if (attr == "_rebuild_tensor_v2") {
        v.global = Global::kRebuildTensorV2;
        known = true;
      } else if (attr == "_rebuild_parameter") {
        v.global = Global::kRebuildParameter;
        known = true;
      } else if (attr == "_rebuild_parameter_with_state") {
        v.global = Global::kRebuildParameterWithState;
        known = true;
      }
    } else if (module == "torch") {
      for (const auto& sn : kStorageNames) {
        if (attr == sn.name) {
          v.global = Global::kStorageType;
          v.storage = sn.type;
          known = true;
        }
      }
    }
    if (!known) {
      // Printed with the input's bytes cut short: the name is the file's, not ours.
      std::string shown = module.substr(0, 64) + "." + attr.substr(0, 64);
      for (char& c : shown) {
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
      }
      return fail("global '" + shown +
                  "' is not on the allow-list (a state dict needs only OrderedDict and torch's "
                  "tensor rebuilders; nothing is executed)");
    }
    return push(add(std::move(v)));
  }

  Status persistent_load() {
    TR_ASSIGN_OR_RETURN(ValueRef pid_ref, pop());
    const Value& pid = val(pid_ref);
    // ('storage', torch.<Type>Storage, key, location, numel), as torch.save writes it.
    if (pid.kind != Kind::kTuple || pid.items.size() != 5 ||
        val(pid.items[0]).kind != Kind::kString || val(pid.items[0]).s != "storage") {
      return fail("persistent id is not a ('storage', type, key, location, numel) tuple");
    }
    const Value& type = val(pid.items[1]);
    const Value& key = val(pid.items[2]);
    const Value& numel = val(pid.items[4]);
    if (type.kind != Kind::kGlobal || type.global != Global::kStorageType) {
      return fail("storage reference without a torch.<Type>Storage");
    }
    if (key.kind != Kind::kString || key.s.empty() || key.s.size() > kMaxStorageKey) {
      return fail("storage reference with a bad key");
    }
    if (numel.kind != Kind::kInt || numel.i < 0) {
      return fail("storage reference with a bad element count");
    }
    Value v;
    v.kind = Kind::kStorage;
    v.storage = type.storage;
    v.s = key.s;
    v.i = numel.i;
    return push(add(std::move(v)));
  }

  Result<Shape> int_tuple(ValueRef r, const char* what) {
    const Value& t = val(r);
    if (t.kind != Kind::kTuple || t.items.size() > kMaxTensorRank) {
      return fail(std::string("tensor ") + what + " is not a tuple of at most " +
                  std::to_string(kMaxTensorRank) + " ints");
    }
    Shape s;
    s.reserve(t.items.size());
    for (ValueRef i : t.items) {
      if (val(i).kind != Kind::kInt || val(i).i < 0) {
        return fail(std::string("tensor ") + what + " holds a negative or non-int value");
      }
      s.push_back(val(i).i);
    }
    return s;
  }

  Status reduce() {
    TR_ASSIGN_OR_RETURN(ValueRef args_ref, pop());
    TR_ASSIGN_OR_RETURN(ValueRef fn_ref, pop());
    const Value& fn = val(fn_ref);
    if (fn.kind != Kind::kGlobal) {
      return fail(std::string("REDUCE on a ") + kind_name(fn.kind) + ", not a callable");
    }
    // No allowed callable takes more than 7 arguments; checked before the copy so that a
    // huge memoised tuple reduced again and again costs nothing.
    if (val(args_ref).kind != Kind::kTuple || val(args_ref).items.size() > 7) {
      return fail("REDUCE arguments are not a tuple of at most 7 values");
    }
    const std::vector<ValueRef> args = val(args_ref).items;  // copy: add() may reallocate
    switch (fn.global) {
      case Global::kOrderedDict: {
        if (!args.empty()) return fail("OrderedDict called with arguments");
        Value v;
        v.kind = Kind::kDict;
        return push(add(std::move(v)));
      }
      case Global::kRebuildTensorV2: {
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        if (args.size() != 6 && args.size() != 7) {
          return fail("_rebuild_tensor_v2 with " + std::to_string(args.size()) + " arguments");
        }
        if (val(args[0]).kind != Kind::kStorage) return fail("tensor without a storage");
        if (val(args[1]).kind != Kind::kInt || val(args[1]).i < 0) {
          return fail("tensor with a bad storage offset");
        }
        TR_ASSIGN_OR_RETURN(Shape size, int_tuple(args[2], "size"));
        TR_ASSIGN_OR_RETURN(Shape stride, int_tuple(args[3], "stride"));
        if (size.size() != stride.size()) return fail("tensor size and stride differ in rank");
        Value v;
        v.kind = Kind::kTensor;
        v.items = {args[0]};
        v.i = val(args[1]).i;
        v.size = std::move(size);
        v.stride = std::move(stride);
        return push(add(std::move(v)));
      }
      case Global::kRebuildParameter:
      case Global::kRebuildParameterWithState: {
        const size_t want = fn.global == Global::kRebuildParameter ? 3 : 4;
        if (args.size() != want || val(args[0]).kind != Kind::kTensor) {
          return fail("_rebuild_parameter without a tensor");
        }
        return push(args[0]);  // a Parameter is its data for our purposes
      }
      case Global::kStorageType:
        return fail("a storage type called directly (only storage references are read)");
    }
    return fail("unknown callable");
  }

  std::string_view in_;
  const std::string& name_;
  size_t pos_ = 0, op_pos_ = 0;
  std::vector<ValueRef> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, ValueRef> memo_;
  Pickle out_;
};

}  // namespace

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kTuple:
      return "tuple";
    case Kind::kList:
      return "list";
    case Kind::kDict:
      return "dict";
    case Kind::kGlobal:
      return "global";
    case Kind::kStorage:
      return "storage";
    case Kind::kTensor:
      return "tensor";
  }
  return "?";
}

size_t storage_elem_size(StorageType t) {
  switch (t) {
    case StorageType::kFloat64:
    case StorageType::kInt64:
      return 8;
    case StorageType::kFloat32:
    case StorageType::kInt32:
      return 4;
    case StorageType::kFloat16:
    case StorageType::kBFloat16:
    case StorageType::kInt16:
      return 2;
    case StorageType::kInt8:
    case StorageType::kUint8:
    case StorageType::kBool:
      return 1;
  }
  return 1;
}

const char* storage_type_name(StorageType t) {
  for (const auto& sn : kStorageNames) {
    if (sn.type == t) return sn.name;
  }
  return "?";
}

bool storage_is_float(StorageType t) {
  return t == StorageType::kFloat32 || t == StorageType::kFloat16 || t == StorageType::kBFloat16 ||
         t == StorageType::kFloat64;
}

Result<Pickle> parse(std::string_view bytes, const std::string& name) {
  // Values are indexed by uint32; one value per input byte at most.
  if (bytes.size() >= (size_t{1} << 31)) return BadInput(name + ": pickle larger than 2 GiB");
  try {
    Machine m(bytes, name);
    return m.run();
  } catch (const std::bad_alloc&) {
    return RuntimeError(name + ": out of memory while reading the pickle");
  }
}

}  // namespace tr::nn::pickle
