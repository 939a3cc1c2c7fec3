#include "nn/checkpoint/pth_reader.h"

#include <zip.h>

#include <cstring>
#include <memory>
#include <new>
#include <unordered_map>

#include "common/checked_math.h"
#include "common/files.h"
#include "nn/checkpoint/pickle_reader.h"

namespace tr::nn {

const Tensor* StateDict::find(const std::string& name) const {
  for (const auto& [k, t] : entries) {
    if (k == name) return &t;
  }
  return nullptr;
}

namespace {

using pickle::Kind;
using pickle::StorageType;
using pickle::Value;
using pickle::ValueRef;

// What the bytes of a checkpoint may expand to. torch.save stores storages uncompressed, so
// they can never exceed the file; these slack factors admit a re-zipped (deflated) file and
// fp16 widening while keeping a zip bomb or a stride-0 view of a huge shape from allocating
// more than a small multiple of the input.
constexpr uint64_t kMaxPickleBytes = uint64_t{64} << 20;
constexpr uint64_t kStorageExpansion = 16;
constexpr uint64_t kOutputExpansion = 32;
constexpr uint64_t kSlackBytes = uint64_t{4} << 20;

// Keys in a dict that wraps the state dict, most specific first (Ultralight: "model").
constexpr const char* kWrapperKeys[] = {"state_dict", "model_state_dict", "model",
                                        "net",        "generator",        "net_g",
                                        "netG",       "params_ema",       "params"};

// Names from the file go into one-line messages: control bytes and long names are cut.
std::string printable(const std::string& s) {
  std::string out = s.substr(0, 120);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  if (s.size() > 120) out += "...";
  return out;
}

bool starts_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(0, p.size()) == p;
}

// torch.save before 1.6 wrote a bare pickle starting with the magic number
// 0x1950a86a20f9469cfc6c as a 10-byte LONG1 (opcode 0x8a, length 10).
bool is_legacy_torch_save(std::string_view b) {
  static const unsigned char kMagic[] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                         0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  std::string_view magic(reinterpret_cast<const char*>(kMagic), sizeof kMagic);
  if (b.empty() || static_cast<unsigned char>(b[0]) != 0x80) return false;
  return b.substr(0, 64).find(magic) != std::string_view::npos;
}

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while (!(mant & 0x400u));
    bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

float load_float(const uint8_t* p, StorageType t) {
  switch (t) {
    case StorageType::kFloat32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case StorageType::kFloat16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return half_to_float(h);
    }
    case StorageType::kBFloat16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      const uint32_t bits = uint32_t{h} << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    }
    case StorageType::kFloat64: {
      double d;
      std::memcpy(&d, p, 8);
      // Out of float's range is undefined behaviour for a plain cast: saturate to inf.
      if (d > 3.4028234663852886e38) return __builtin_inff();
      if (d < -3.4028234663852886e38) return -__builtin_inff();
      return static_cast<float>(d);
    }
    default:
      return 0.f;  // not reached: only float storages are materialised
  }
}

struct ZipDiscard {
  void operator()(zip_t* z) const { zip_discard(z); }
};
struct ZipFileClose {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};

class Reader {
 public:
  Reader(std::string_view bytes, const std::string& name) : bytes_(bytes), name_(name) {}

  Result<StateDict> read() {
    if (is_legacy_torch_save(bytes_)) {
      return bad(
          "legacy torch.save format (before PyTorch 1.6); re-save it with torch.save(..., "
          "_use_new_zipfile_serialization=True)");
    }
    if (!starts_with(bytes_, "PK\x03\x04") && !starts_with(bytes_, "PK\x05\x06")) {
      return bad("not a PyTorch checkpoint (not a zip file)");
    }
    storage_budget_ = kStorageExpansion * bytes_.size() + kSlackBytes;
    output_budget_ = kOutputExpansion * bytes_.size() + kSlackBytes;
    TR_RETURN_IF_ERROR(open_zip());
    TR_RETURN_IF_ERROR(find_prefix());
    TR_ASSIGN_OR_RETURN(zip_int64_t pkl_index, locate(prefix_ + "data.pkl"));
    TR_ASSIGN_OR_RETURN(uint64_t pkl_size, entry_size(pkl_index, "data.pkl"));
    if (pkl_size > kMaxPickleBytes || pkl_size > storage_budget_) {
      return bad("data.pkl of " + std::to_string(pkl_size) + " bytes is too large");
    }
    std::string pkl(pkl_size, '\0');
    TR_RETURN_IF_ERROR(read_entry(pkl_index, pkl.data(), pkl_size, "data.pkl"));
    TR_ASSIGN_OR_RETURN(pickle::Pickle p, pickle::parse(pkl, name_ + ": data.pkl"));
    pickle_ = &p;
    TR_ASSIGN_OR_RETURN(ValueRef dict, choose_state_dict());
    return materialise(dict);
  }

 private:
  Error bad(const std::string& what) const { return BadInput(name_ + ": " + what); }

  Status open_zip() {
    zip_error_t err;
    zip_error_init(&err);
    zip_source_t* src = zip_source_buffer_create(bytes_.data(), bytes_.size(), 0, &err);
    if (!src) {
      std::string msg = zip_error_strerror(&err);
      zip_error_fini(&err);
      return RuntimeError(name_ + ": cannot read the zip: " + msg);
    }
    zip_t* za = zip_open_from_source(src, ZIP_RDONLY, &err);
    if (!za) {
      zip_source_free(src);
      std::string msg = zip_error_strerror(&err);
      zip_error_fini(&err);
      return bad("truncated or damaged zip archive (" + msg + ")");
    }
    zip_error_fini(&err);
    zip_.reset(za);
    return Status::Ok();
  }

  // torch.save puts every record under one folder named after the file ("model/data.pkl";
  // "archive/" in newer versions): the single top-level "<prefix>/data.pkl" names it.
  Status find_prefix() {
    const zip_int64_t n = zip_get_num_entries(zip_.get(), 0);
    int found = 0;
    for (zip_int64_t i = 0; i < n; ++i) {
      const char* nm = zip_get_name(zip_.get(), static_cast<zip_uint64_t>(i), 0);
      if (!nm) continue;
      std::string_view s(nm);
      const size_t slash = s.find('/');
      if (slash == std::string_view::npos || slash == 0 || s.substr(slash) != "/data.pkl") {
        continue;
      }
      if (++found > 1) return bad("the zip holds more than one <folder>/data.pkl");
      prefix_ = std::string(s.substr(0, slash + 1));
    }
    if (found == 0) return bad("a zip without <folder>/data.pkl: not a PyTorch checkpoint");
    // Newer torch records the byte order; storages are read as little-endian.
    const zip_int64_t bo = zip_name_locate(zip_.get(), (prefix_ + "byteorder").c_str(), 0);
    if (bo >= 0) {
      TR_ASSIGN_OR_RETURN(uint64_t size, entry_size(bo, "byteorder"));
      if (size > 16) return bad("byteorder record of " + std::to_string(size) + " bytes");
      std::string order(size, '\0');
      TR_RETURN_IF_ERROR(read_entry(bo, order.data(), size, "byteorder"));
      if (order != "little") return bad("storages in byte order '" + printable(order) + "'");
    }
    return Status::Ok();
  }

  Result<zip_int64_t> locate(const std::string& entry) {
    const zip_int64_t i = zip_name_locate(zip_.get(), entry.c_str(), 0);
    if (i < 0) return bad("the zip has no " + printable(entry));
    return i;
  }

  Result<uint64_t> entry_size(zip_int64_t index, const std::string& what) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(zip_.get(), static_cast<zip_uint64_t>(index), 0, &st) != 0 ||
        !(st.valid & ZIP_STAT_SIZE)) {
      return bad("cannot stat " + printable(what) + " in the zip");
    }
    return static_cast<uint64_t>(st.size);
  }

  // Reads all `size` bytes of an entry into dst; libzip checks the CRC once the end is read.
  Status read_entry(zip_int64_t index, void* dst, uint64_t size, const std::string& what) {
    if (size > storage_budget_ - storage_used_) {
      return bad("storages larger than the file allows (" + printable(what) + ")");
    }
    storage_used_ += size;
    std::unique_ptr<zip_file_t, ZipFileClose> f(
        zip_fopen_index(zip_.get(), static_cast<zip_uint64_t>(index), 0));
    if (!f) {
      return bad("cannot open " + printable(what) + " in the zip (" + zip_strerror(zip_.get()) +
                 ")");
    }
    auto* out = static_cast<uint8_t*>(dst);
    uint64_t done = 0;
    while (done < size) {
      const zip_int64_t n = zip_fread(f.get(), out + done, size - done);
      if (n <= 0) {
        return bad("cannot read " + printable(what) + " from the zip (" +
                   (n < 0 ? zip_file_strerror(f.get()) : "ends early") + ")");
      }
      done += static_cast<uint64_t>(n);
    }
    // One more read reaches the end, where libzip compares the CRC.
    uint8_t extra;
    const zip_int64_t n = zip_fread(f.get(), &extra, 1);
    if (n != 0) {
      return bad(printable(what) + " in the zip is " +
                 (n < 0 ? std::string("damaged (") + zip_file_strerror(f.get()) + ")"
                        : std::string("longer than its size")));
    }
    return Status::Ok();
  }

  // --- choosing the dict of tensors -----------------------------------------------------
  const Value& at(ValueRef r) const { return pickle_->at(r); }

  bool holds_tensor(const Value& d) const {
    if (d.kind != Kind::kDict) return false;
    for (size_t k = 1; k < d.items.size(); k += 2) {
      if (at(d.items[k]).kind == Kind::kTensor) return true;
    }
    return false;
  }

  Result<ValueRef> choose_state_dict() {
    const Value& root = at(pickle_->root);
    if (root.kind != Kind::kDict) {
      return bad(std::string("the checkpoint holds a ") + pickle::kind_name(root.kind) +
                 ", not a dict of tensors");
    }
    // A wrapper first: a state dict's own values are tensors, never dicts.
    for (const char* key : kWrapperKeys) {
      ValueRef found = 0;
      bool have = false;
      for (size_t k = 0; k + 1 < root.items.size(); k += 2) {
        const Value& kv = at(root.items[k]);
        if (kv.kind == Kind::kString && kv.s == key) {
          found = root.items[k + 1];  // the last one wins, as in Python
          have = true;
        }
      }
      if (have && holds_tensor(at(found))) return found;
    }
    if (holds_tensor(root)) return pickle_->root;
    std::string keys;
    size_t shown = 0;
    for (size_t k = 0; k + 1 < root.items.size() && shown < 8; k += 2, ++shown) {
      const Value& kv = at(root.items[k]);
      if (shown) keys += ", ";
      if (kv.kind == Kind::kString) {
        keys += '\'';
        keys += printable(kv.s);
        keys += '\'';
      } else {
        keys += pickle::kind_name(kv.kind);
      }
    }
    return bad("no state dict in the checkpoint: no tensors at the top level (keys: " +
               (keys.empty() ? std::string("none") : keys) +
               ") nor under 'model', 'state_dict', 'net' or 'generator'");
  }

  // --- reading the tensors ----------------------------------------------------------------
  struct Pending {
    std::string name;
    ValueRef tensor;
  };

  Result<StateDict> materialise(ValueRef dict_ref) {
    const Value& d = at(dict_ref);
    // Python's dict keeps a repeated key at its first position with the last value.
    std::vector<Pending> pending;
    std::unordered_map<std::string, size_t> position;
    for (size_t k = 0; k + 1 < d.items.size(); k += 2) {
      const Value& key = at(d.items[k]);
      const Value& v = at(d.items[k + 1]);
      if (v.kind != Kind::kTensor) continue;  // e.g. a version number beside the tensors
      if (key.kind != Kind::kString) {
        return bad(std::string("a tensor under a ") + pickle::kind_name(key.kind) +
                   " key in the state dict");
      }
      // Integer tensors (BatchNorm's num_batches_tracked) are bookkeeping, not weights.
      if (!pickle::storage_is_float(at(v.items[0]).storage)) continue;
      auto [it, inserted] = position.emplace(key.s, pending.size());
      if (inserted) {
        pending.push_back({key.s, d.items[k + 1]});
      } else {
        pending[it->second].tensor = d.items[k + 1];
      }
    }
    if (pending.empty()) return bad("the state dict holds no float tensors");

    // Storages shared by several tensors (slices, views) are read once and kept until the
    // last of them is built; a storage used once by a plain fp32 tensor is read straight
    // into it.
    for (const auto& p : pending) ++uses_[at(at(p.tensor).items[0]).s];
    StateDict out;
    out.entries.reserve(pending.size());
    for (const auto& p : pending) {
      TR_ASSIGN_OR_RETURN(Tensor t, build_tensor(p.name, at(p.tensor)));
      out.entries.emplace_back(p.name, std::move(t));
    }
    return out;
  }

  Result<Tensor> build_tensor(const std::string& name, const Value& tv) {
    const Value& sv = at(tv.items[0]);
    const std::string what = "tensor '" + printable(name) + "'";
    const std::string record = "data/" + printable(sv.s);
    const size_t esize = pickle::storage_elem_size(sv.storage);

    TR_ASSIGN_OR_RETURN(int64_t numel, checked_numel(tv.size, name_ + ": " + what + " shape"));
    // The last element the view reaches, which must lie inside the storage.
    int64_t last = tv.i;
    if (numel > 0) {
      for (size_t k = 0; k < tv.size.size(); ++k) {
        TR_ASSIGN_OR_RETURN(int64_t span, checked_mul(tv.size[k] - 1, tv.stride[k], name_));
        TR_ASSIGN_OR_RETURN(last, checked_add(last, span, name_));
      }
      if (last >= sv.i) {
        return bad(what + " " + shape_str(tv.size) + " at offset " + std::to_string(tv.i) +
                   " reaches element " + std::to_string(last) + " of " + record + ", which holds " +
                   std::to_string(sv.i) + " (storage too short)");
      }
    }
    TR_ASSIGN_OR_RETURN(size_t declared, checked_bytes(sv.i, esize, name_ + ": " + record));
    TR_ASSIGN_OR_RETURN(size_t out_bytes, checked_bytes(numel, 4, name_ + ": " + what));
    if (out_bytes > output_budget_ - output_used_) {
      return bad(what + " " + shape_str(tv.size) + ": tensors larger than the file allows");
    }
    output_used_ += out_bytes;

    TR_ASSIGN_OR_RETURN(zip_int64_t index, locate(prefix_ + "data/" + sv.s));
    TR_ASSIGN_OR_RETURN(uint64_t size, entry_size(index, record));
    if (size != declared) {
      return bad(what + ": " + record + " holds " + std::to_string(size) + " bytes, not the " +
                 std::to_string(sv.i) + " x " + std::to_string(esize) + " of its " +
                 pickle::storage_type_name(sv.storage) + " (storage too short or damaged)");
    }

    Tensor t = Tensor::f32(tv.size);
    const bool contiguous = is_contiguous(tv.size, tv.stride);
    int& uses = uses_[sv.s];
    --uses;
    if (sv.storage == StorageType::kFloat32 && contiguous && tv.i == 0 && numel == sv.i &&
        uses == 0 && cache_.find(sv.s) == cache_.end()) {
      TR_RETURN_IF_ERROR(read_entry(index, t.raw(), size, what + " (" + record + ")"));
      return t;
    }
    auto it = cache_.find(sv.s);
    if (it == cache_.end()) {
      Tensor raw(DType::kUint8, {static_cast<int64_t>(size)});
      TR_RETURN_IF_ERROR(read_entry(index, raw.raw(), size, what + " (" + record + ")"));
      it = cache_.emplace(sv.s, std::move(raw)).first;
    }
    // The entry's size matched this reference's numel x esize above, so the view fits.
    gather(it->second.data<uint8_t>(), sv.storage, tv, t.data<float>(), contiguous, numel);
    if (uses == 0) cache_.erase(it);
    return t;
  }

  static bool is_contiguous(const Shape& size, const Shape& stride) {
    int64_t expect = 1;
    for (size_t k = size.size(); k-- > 0;) {
      if (size[k] != 1 && stride[k] != expect) return false;
      expect *= size[k];  // no overflow: numel was checked
    }
    return true;
  }

  // Copies the strided view into dst (contiguous), widening to float32.
  static void gather(const uint8_t* src, StorageType type, const Value& tv, float* dst,
                     bool contiguous, int64_t numel) {
    const size_t esize = pickle::storage_elem_size(type);
    const uint8_t* base = src + static_cast<size_t>(tv.i) * esize;
    if (numel == 0) return;
    if (contiguous) {
      if (type == StorageType::kFloat32) {
        std::memcpy(dst, base, static_cast<size_t>(numel) * 4);
      } else {
        for (int64_t e = 0; e < numel; ++e) dst[e] = load_float(base + e * esize, type);
      }
      return;
    }
    const size_t rank = tv.size.size();  // >= 1: a scalar is contiguous
    const int64_t inner = tv.size[rank - 1];
    const int64_t inner_stride = tv.stride[rank - 1];
    std::vector<int64_t> idx(rank, 0);
    int64_t off = 0;  // element offset of idx's row start
    for (int64_t row = 0, rows = numel / inner; row < rows; ++row) {
      const uint8_t* p = base + static_cast<size_t>(off) * esize;
      for (int64_t e = 0; e < inner; ++e) {
        *dst++ = load_float(p + static_cast<size_t>(e * inner_stride) * esize, type);
      }
      // Advance the outer index like an odometer.
      for (size_t k = rank - 1; k-- > 0;) {
        if (idx[k] + 1 < tv.size[k]) {
          ++idx[k];
          off += tv.stride[k];
          break;
        }
        off -= tv.stride[k] * (tv.size[k] - 1);  // checked against the storage above
        idx[k] = 0;
      }
    }
  }

  std::string_view bytes_;
  const std::string& name_;
  std::unique_ptr<zip_t, ZipDiscard> zip_;
  std::string prefix_;  // "model/"
  const pickle::Pickle* pickle_ = nullptr;
  uint64_t storage_budget_ = 0, storage_used_ = 0;
  uint64_t output_budget_ = 0, output_used_ = 0;
  std::unordered_map<std::string, int> uses_;
  std::unordered_map<std::string, Tensor> cache_;
};

}  // namespace

Result<StateDict> read_pth_bytes(std::string_view bytes, const std::string& name) {
  try {
    Reader r(bytes, name);
    return r.read();
  } catch (const std::bad_alloc&) {
    return RuntimeError(name + ": out of memory while reading the checkpoint");
  }
}

Result<StateDict> read_pth(const std::string& path) {
  TR_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
  return read_pth_bytes(bytes, path);
}

}  // namespace tr::nn
