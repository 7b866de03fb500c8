//! Compiles `src/mock_retention.c` against the headers of the librdkafka that rdkafka-sys built
//! (its build tree is `DEP_RDKAFKA_ROOT`), so that the benchmark's broker can keep GBs per
//! partition in librdkafka's mock cluster.

fn main() {
    let root = std::env::var("DEP_RDKAFKA_ROOT")
        .expect("DEP_RDKAFKA_ROOT: rdkafka-sys builds librdkafka from source (no dynamic-linking)");
    cc::Build::new()
        .file("src/mock_retention.c")
        .include(format!("{root}/src"))
        .include(&root)
        .warnings(false)
        .compile("lakesink_bench_mock_retention");
    println!("cargo:rerun-if-changed=src/mock_retention.c");
}
