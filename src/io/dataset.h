// SyncTalk_2D / Ultralight dataset folders as avatars (model-contract.md section 1, the
// training-data layout; architecture.md "Avatar sources"):
//
//   DIR/full_body_img/{i}.jpg   the frames, i = 0..N-1 (as cv2.imwrite wrote them)
//   DIR/landmarks/{i}.lms       110 points each; the face rect by the contract's rule
//   DIR/aud_ave.npy, aud_hu.npy, aud_wenet.npy   features (optional, by audio mode)
//
// open_dataset() returns the same AvatarPackage as open_package(), frames in the same
// FrameStore (JPEG planes instead of video YUV, --cache-mb streaming included), so render
// code does not know which layout it reads. Everything is checked before frames are
// decoded, and errors are kBadInput naming the file: a gap in the numbering, a .jpg without
// its .lms or the reverse, a .lms that does not parse or has another point count, a rect
// outside its frame, frames of different sizes, a JPEG that does not decode.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"
#include "io/package.h"

namespace tr::io {

// A folder with full_body_img/ (what tells a dataset from a package).
bool is_dataset_dir(const std::string& dir);

// PackageOptions as for packages; crops_from kVideo is refused (a dataset has no crop
// video). AvatarPackage::fps is 0 (images have no rate; the render uses the model's),
// full_video_path names the full_body_img folder and rects_path the landmarks folder.
Result<AvatarPackage> open_dataset(const std::string& dir, const PackageOptions& opts = {});

// The one entry for `--package DIR` / `--dataset DIR`: exactly one of them is non-empty.
Result<AvatarPackage> open_avatar(const std::string& package_dir, const std::string& dataset_dir,
                                  const PackageOptions& opts = {});

// The dataset's feature file for an audio mode named as the render's family table names it
// ("ave" -> aud_ave.npy, anything with "hu" (hubert) -> aud_hu.npy, "wenet" ->
// aud_wenet.npy); empty when that file is absent.
std::string dataset_features_path(const std::string& dir, std::string_view mode_name);

}  // namespace tr::io
