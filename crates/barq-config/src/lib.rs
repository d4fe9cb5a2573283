//! Barq DB settings: one [`Settings`] document with the cold store and the tiering knobs.
//!
//! Layers, later wins: defaults → a TOML file (`barq.toml`; its path by flag or `BARQ_CONFIG`)
//! → `BARQ_*` environment variables. Durations are written like `7d`, `90s`, `500ms`; sizes like
//! `10GiB`, `512MiB`. Unknown keys (in the file, or `BARQ_TIER_*` variables) are errors.
//! [`Settings::validate`] names the missing or wrong setting. Credentials are never part of the
//! settings: the cloud builders read the standard AWS / Google / Azure variables themselves, and
//! nothing here prints them. See `docs/configuration.md`.

mod load;
mod settings;
mod store;
pub mod units;

pub use load::{ENV_CONFIG, load, load_from, load_with_store_url};
pub use settings::{
    IndexSettings, Provider, Settings, StorageSettings, TieringSettings, VerifyUploads,
};
pub use store::{build_cold_store, describe};
pub use units::{HumanDuration, Size};
