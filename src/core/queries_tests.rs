//! Filters, bounds and signed bytes of queries.

use super::*;
use crate::core::proto::MemberInfo;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn member(name: &str, dc: &str, tags: &[(&str, &str)]) -> MemberInfo {
    MemberInfo {
        id: id(name),
        addr: format!("{name}:7946"),
        dc: dc.into(),
        zone: String::new(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn hit(f: &QueryFilter, m: &MemberInfo) -> bool {
    f.matches(&m.id, &m.dc, &m.tags)
}

fn query() -> Query {
    Query {
        asker: id("a"),
        seq: 7,
        name: "uptime".into(),
        payload: b"p".to_vec(),
        filter: QueryFilter::default(),
        timeout_ms: 2_000,
        sig: Default::default(),
    }
}

#[test]
fn an_empty_filter_matches_everyone() {
    let f = QueryFilter::default();
    assert!(hit(&f, &member("n1", "", &[])));
    assert!(hit(&f, &member("n2", "eu", &[("role", "db")])));
}

#[test]
fn every_condition_of_a_filter_must_hold() {
    let f = QueryFilter {
        tags: [("role", "db"), ("tier", "1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        dc: Some("eu".into()),
        nodes: vec![id("n1"), id("n2")],
    };
    assert!(hit(
        &f,
        &member("n1", "eu", &[("role", "db"), ("tier", "1"), ("x", "y")])
    ));
    // One tag missing, one tag with another value, another dc, another node.
    assert!(!hit(&f, &member("n1", "eu", &[("role", "db")])));
    assert!(!hit(
        &f,
        &member("n1", "eu", &[("role", "web"), ("tier", "1")])
    ));
    assert!(!hit(
        &f,
        &member("n1", "us", &[("role", "db"), ("tier", "1")])
    ));
    assert!(!hit(
        &f,
        &member("n3", "eu", &[("role", "db"), ("tier", "1")])
    ));
    // A tag filter alone: the dc and id do not matter.
    let tag_only = QueryFilter {
        tags: [("role".to_string(), "db".to_string())].into(),
        ..QueryFilter::default()
    };
    assert!(hit(&tag_only, &member("n9", "us", &[("role", "db")])));
    // An empty value is a value: a member without the tag does not match it.
    let empty = QueryFilter {
        tags: [("role".to_string(), String::new())].into(),
        ..QueryFilter::default()
    };
    assert!(!hit(&empty, &member("n9", "us", &[])));
    assert!(hit(&empty, &member("n9", "us", &[("role", "")])));
}

#[test]
fn filters_beyond_their_bounds_are_refused() {
    let mut f = QueryFilter::default();
    for i in 0..MAX_FILTER_TAGS {
        f.tags.insert(format!("k{i}"), "v".into());
    }
    assert!(f.check().is_ok());
    f.tags.insert("one-more".into(), "v".into());
    assert!(f.check().unwrap_err().to_string().contains("17 tags"));
    let mut f = QueryFilter {
        nodes: (0..MAX_FILTER_NODES)
            .map(|i| id(&format!("n{i}")))
            .collect(),
        ..QueryFilter::default()
    };
    assert!(f.check().is_ok());
    f.nodes.push(id("n64"));
    assert!(f.check().unwrap_err().to_string().contains("65 node ids"));
    let f = QueryFilter {
        dc: Some("d".repeat(MAX_FILTER_FIELD + 1)),
        ..QueryFilter::default()
    };
    assert!(matches!(f.check(), Err(QueryError::Filter(_))));
    let f = QueryFilter {
        tags: [(String::new(), "v".into())].into(),
        ..QueryFilter::default()
    };
    assert!(matches!(f.check(), Err(QueryError::Filter(_))));
}

#[test]
fn a_query_is_held_to_an_events_bounds_and_its_timeout_limit() {
    let q = query();
    assert!(q.check(8, 10_000).is_ok());
    let mut big = q.clone();
    big.payload = vec![0; 9];
    assert!(matches!(
        big.check(8, 10_000),
        Err(QueryError::Bounds(EventError::PayloadTooLarge {
            len: 9,
            max: 8
        }))
    ));
    let mut unnamed = q.clone();
    unnamed.name.clear();
    assert!(matches!(
        unnamed.check(8, 10_000),
        Err(QueryError::Bounds(EventError::EmptyName))
    ));
    for ms in [0, 10_001] {
        let mut t = q.clone();
        t.timeout_ms = ms;
        let e = t.check(8, 10_000).unwrap_err();
        assert!(e.to_string().contains("max_timeout_ms"), "{e}");
    }
}

#[test]
fn signed_bytes_cover_every_field_and_differ_from_an_events() {
    let q = query();
    let base = q.signed_bytes();
    assert!(base.starts_with(b"gossamer/query/v1\0"));
    let changed: Vec<Query> = vec![
        Query {
            asker: id("b"),
            ..q.clone()
        },
        Query {
            seq: 8,
            ..q.clone()
        },
        Query {
            name: "uptimf".into(),
            ..q.clone()
        },
        Query {
            payload: b"q".to_vec(),
            ..q.clone()
        },
        Query {
            timeout_ms: 2_001,
            ..q.clone()
        },
        Query {
            filter: QueryFilter {
                dc: Some(String::new()),
                ..QueryFilter::default()
            },
            ..q.clone()
        },
        Query {
            filter: QueryFilter {
                nodes: vec![id("a")],
                ..QueryFilter::default()
            },
            ..q.clone()
        },
        Query {
            filter: QueryFilter {
                tags: [("k".to_string(), "v".to_string())].into(),
                ..QueryFilter::default()
            },
            ..q.clone()
        },
    ];
    for c in &changed {
        assert_ne!(c.signed_bytes(), base, "{c:?} signs the same bytes");
    }
    // Length prefixes: moving a byte from the name to the payload changes the bytes.
    let a = Query {
        name: "ab".into(),
        payload: b"c".to_vec(),
        ..q.clone()
    };
    let b = Query {
        name: "a".into(),
        payload: b"bc".to_vec(),
        ..q.clone()
    };
    assert_ne!(a.signed_bytes(), b.signed_bytes());
    // Tag key and value boundaries too.
    let t = |k: &str, v: &str| Query {
        filter: QueryFilter {
            tags: [(k.to_string(), v.to_string())].into(),
            ..QueryFilter::default()
        },
        ..q.clone()
    };
    assert_ne!(t("ab", "c").signed_bytes(), t("a", "bc").signed_bytes());
    // An event with the same sender, seq, name and payload signs other bytes.
    let e = UserEvent {
        sender: q.asker.clone(),
        seq: q.seq,
        name: q.name.clone(),
        payload: q.payload.clone(),
        sig: Default::default(),
    };
    assert_ne!(e.signed_bytes(), base);
}

#[test]
fn the_configuration_is_checked_naming_the_field() {
    assert!(QueryConfig::default().validate().is_ok());
    let cases = [
        (
            QueryConfig {
                max_response_payload: 0,
                ..QueryConfig::default()
            },
            "queries.max_response_payload",
        ),
        (
            QueryConfig {
                max_response_payload: MAX_RESPONSE_LIMIT + 1,
                ..QueryConfig::default()
            },
            "queries.max_response_payload",
        ),
        (
            QueryConfig {
                max_responses: 0,
                ..QueryConfig::default()
            },
            "queries.max_responses",
        ),
        (
            QueryConfig {
                max_pending: 0,
                ..QueryConfig::default()
            },
            "queries.max_pending",
        ),
        (
            QueryConfig {
                max_answering: 0,
                ..QueryConfig::default()
            },
            "queries.max_answering",
        ),
        (
            QueryConfig {
                max_timeout_ms: 0,
                ..QueryConfig::default()
            },
            "queries.max_timeout_ms",
        ),
    ];
    for (cfg, field) in cases {
        let e = cfg.validate().unwrap_err();
        assert_eq!(e.field, field);
        assert!(e.to_string().starts_with(field), "{e}");
    }
    // The section in a configuration file, with a field it does not know refused.
    let c: crate::core::Config = toml::from_str("[queries]\nmax_response_payload = 100\n").unwrap();
    assert_eq!(c.queries.max_response_payload, 100);
    assert!(toml::from_str::<crate::core::Config>("[queries]\nmax_reponses = 1\n").is_err());
}
