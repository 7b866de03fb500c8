use zstd_safe::{CCtx, CParameter, DCtx};

/// The vendored zstd-safe keeps dropped contexts for reuse on their thread (see
/// `vendor/README.md`). A reused context must start as a new one does: without the last
/// user's parameters or dictionary.
#[test]
fn a_reused_zstd_context_starts_without_the_last_users_parameters_or_dictionary() {
    let dict =
        b"eventTime eventName awsRegion sourceIPAddress userAgent requestParameters ".repeat(20);
    let data = dict.repeat(3);
    let mut with_dict = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
    {
        let mut c = CCtx::create();
        c.set_parameter(CParameter::CompressionLevel(19)).unwrap();
        c.set_parameter(CParameter::ChecksumFlag(true)).unwrap();
        c.load_dictionary(&dict).unwrap();
        c.compress2(&mut with_dict, &data).unwrap();
        let mut d = DCtx::create();
        d.load_dictionary(&dict).unwrap();
        let mut back = Vec::with_capacity(data.len());
        d.decompress(&mut back, &with_dict).unwrap();
        assert_eq!(back, data);
    } // Both kept for reuse.
    let mut c = CCtx::create();
    let mut plain = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
    c.compress2(&mut plain, &data).unwrap();
    // Frame header descriptor: bit 2 is the content checksum flag (off by default).
    assert_eq!(
        plain[4] & 0x04,
        0,
        "the reused context kept the checksum parameter"
    );
    let mut back = Vec::with_capacity(data.len());
    DCtx::create().decompress(&mut back, &plain).unwrap();
    assert_eq!(
        back, data,
        "the reused context compressed against a stale dictionary"
    );
    // The reused decompression context no longer has the dictionary.
    let mut d = DCtx::create();
    let mut back = Vec::with_capacity(data.len());
    assert!(
        d.decompress(&mut back, &with_dict).is_err() || back != data,
        "the reused decompression context kept the dictionary"
    );
}
