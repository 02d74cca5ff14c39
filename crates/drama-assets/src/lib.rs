#![doc = include_str!("../README.md")]

mod error;
mod intake;
pub mod keys;
mod limits;
mod local;
mod media;
mod memory;
#[cfg(feature = "s3")]
mod s3;
mod s3_options;
mod settings;
mod signing;
mod store;

pub use error::{AssetError, AssetResult};
pub use keys::{Category, KeyPrefix, ObjectKey, Scope};
pub use limits::{SizeLimits, parse_size};
pub use local::LocalStore;
pub use media::{MediaKind, MediaType, SNIFF_LEN};
pub use memory::MemoryStore;
#[cfg(feature = "s3")]
pub use s3::S3Store;
pub use s3_options::{MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, MultipartSettings, S3Options};
pub use settings::{AssetSettings, BackendKind, VARIABLES, open_store};
pub use signing::{FILES_PATH, MIN_SECRET_LEN, SignedRequest, UrlSigner};
pub use store::{
    AssetStore, ByteRange, ByteStream, CheckReport, CheckStep, ContentRange, ListPage,
    MAX_PRESIGN_EXPIRY, ObjectInfo, ObjectStream, ObjectSummary, PresignMethod, PresignedRequest,
    USAGE_PAGE, Usage, UsageBound, verify_upload,
};
