//! An HTTP/2 connection at drain: GOAWAY, and its stream in flight completes.

use super::start_proxy;
use std::time::Duration;
use support::admin::wait_inflight;
use support::h2::{
    h2_frame, h2_read_all, H2Frame, H2_DATA, H2_GOAWAY, H2_HEADERS, H2_PREFACE, H2_SETTINGS,
};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

#[tokio::test]
async fn http2_connection_gets_goaway_and_its_stream_in_flight_completes() {
    let app = TestUpstream::slow().await;
    let delay = Duration::from_millis(200);
    let mut p = start_proxy(app.addr, "drain:\n  delay: 200ms\n  timeout: 5s\n").await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let path = b"/slow/1000";
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8]; // GET, http, :path literal
    block.extend_from_slice(path);
    block.extend_from_slice(&[0x01, 0x04]); // :authority literal
    block.extend_from_slice(b"test");
    let mut hello = H2_PREFACE.to_vec();
    hello.extend(h2_frame(H2_SETTINGS, 0, 0, &[]));
    hello.extend(h2_frame(H2_HEADERS, 0x5, 1, &block)); // END_STREAM | END_HEADERS
    s.write_all(&hello).await.unwrap();
    let reader = tokio::spawn(tokio::time::timeout(Duration::from_secs(8), h2_read_all(s)));
    wait_inflight(p.admin, 1).await;

    let t0 = Instant::now();
    p.signal(libc::SIGTERM);
    let frames = reader
        .await
        .unwrap()
        .expect("lifeguard closes the HTTP/2 connection after the drain");

    let goaways: Vec<&H2Frame> = frames.iter().filter(|f| f.ty == H2_GOAWAY).collect();
    assert!(!goaways.is_empty(), "no GOAWAY: {frames:?}");
    for g in &goaways {
        assert!(
            g.at.duration_since(t0) >= delay,
            "GOAWAY during drain.delay: {frames:?}"
        );
        assert_eq!(&g.payload[4..8], &[0, 0, 0, 0], "GOAWAY error code: {g:?}");
    }
    let last = goaways.last().unwrap();
    let last_stream = u32::from_be_bytes([
        last.payload[0],
        last.payload[1],
        last.payload[2],
        last.payload[3],
    ]) & 0x7fff_ffff;
    assert!(last_stream >= 1, "GOAWAY would drop stream 1: {last:?}");

    let first_goaway = frames.iter().position(|f| f.ty == H2_GOAWAY).unwrap();
    let headers = frames
        .iter()
        .position(|f| f.ty == H2_HEADERS && f.stream == 1)
        .unwrap_or_else(|| panic!("no response HEADERS on stream 1: {frames:?}"));
    assert!(
        first_goaway < headers,
        "expected the GOAWAY while the stream was in flight: {frames:?}"
    );
    assert_eq!(frames[headers].payload.first(), Some(&0x88), ":status 200");
    let data: Vec<u8> = frames
        .iter()
        .filter(|f| f.ty == H2_DATA && f.stream == 1)
        .flat_map(|f| f.payload.clone())
        .collect();
    assert_eq!(String::from_utf8_lossy(&data), "done /slow/1000");
    assert!(
        frames
            .iter()
            .any(|f| f.stream == 1 && (f.ty == H2_DATA || f.ty == H2_HEADERS) && f.flags & 1 == 1),
        "stream 1 never ended: {frames:?}"
    );

    let st = p.wait_exit(5).await.expect("exits");
    assert_eq!(st.code(), Some(0), "{st:?}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}
