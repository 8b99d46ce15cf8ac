//! Records the build time, the floor below which gatecert never trusts the wall clock.
//! Honours SOURCE_DATE_EPOCH (reproducible builds; Yocto and OpenWrt set it).
fn main() {
    let t = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=GATECERT_BUILD_TIME={t}");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}
