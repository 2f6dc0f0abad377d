//! The strict exposition parser (`support::prometheus`) rejects what it
//! should.

use support::prometheus::parse_exposition;

#[test]
fn the_parser_rejects_what_it_should() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n";
    assert_eq!(parse_exposition(ok).get("a_total", &[("x", "1")]), 3.0);
    let bad = [
        "a_total 3\n",                                                   // no TYPE/HELP
        "# TYPE a_total counter\na_total 3\n",                           // no HELP
        "# HELP a_total A.\n# TYPE a_total counter\na_total 3",           // no final newline
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=1} 3\n",    // unquoted
        "# HELP a_total A.\n# TYPE a_total counter\na_total -1\n",        // negative counter
        "# HELP a_total A.\n# TYPE a_total counter\na_total 3\na_total 4\n", // duplicate
        "# HELP h A.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# HELP h A.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
        "# HELP h A.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
    ];
    for text in bad {
        let r = std::panic::catch_unwind(|| parse_exposition(text));
        assert!(r.is_err(), "accepted: {text:?}");
    }
}
