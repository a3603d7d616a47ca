use super::*;

#[test]
fn defaults_match_the_embedded_default() {
    let s = Settings::resolve(SettingsLayer::default()).expect("defaults");
    assert_eq!(s.listen.to_string(), "127.0.0.1:9092");
    assert_eq!(
        (s.advertised_host.as_str(), s.advertised_port),
        ("127.0.0.1", 9092)
    );
    assert_eq!(s.data_dir, PathBuf::from("data"));
    assert!(s.auto_create_topics);
}

#[test]
fn flags_override_the_file() {
    let file: SettingsLayer = toml::from_str("num-partitions = 3\nbroker-id = 7\n").expect("toml");
    let flags = SettingsLayer {
        num_partitions: Some(5),
        ..SettingsLayer::default()
    };
    let s = Settings::resolve(flags.or(file)).expect("valid");
    assert_eq!((s.num_partitions, s.broker_id), (5, 7));
}

#[test]
fn errors_name_the_key() {
    let unknown =
        toml::from_str::<SettingsLayer>("no-such-setting = 1\n").expect_err("unknown key");
    assert!(unknown.to_string().contains("no-such-setting"), "{unknown}");
    let cases = [
        (
            SettingsLayer {
                listen: Some("nowhere".into()),
                ..Default::default()
            },
            "listen",
        ),
        (
            SettingsLayer {
                num_partitions: Some(0),
                ..Default::default()
            },
            "num-partitions",
        ),
        (
            SettingsLayer {
                log_retention_ms: Some(-5),
                ..Default::default()
            },
            "log-retention-ms",
        ),
        (
            SettingsLayer {
                compression_type: Some("brotli".into()),
                ..Default::default()
            },
            "compression-type",
        ),
        (
            SettingsLayer {
                listen: Some("0.0.0.0:9092".into()),
                ..Default::default()
            },
            "advertised-listener",
        ),
        (
            SettingsLayer {
                upload_ingest_multiple: Some(0.5),
                ..Default::default()
            },
            "upload-ingest-multiple",
        ),
        (
            SettingsLayer {
                upload_ingest_multiple: Some(f64::NAN),
                ..Default::default()
            },
            "upload-ingest-multiple",
        ),
    ];
    for (layer, key) in cases {
        let err = Settings::resolve(layer).expect_err("invalid");
        assert!(
            err.to_string().contains(&format!("`{key}`")),
            "{err} should name {key}"
        );
    }
}
