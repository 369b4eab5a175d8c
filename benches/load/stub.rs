//! The stub upstream: plain HTTP/1.1 (hyper), answering every request with
//! the same 1 KiB JSON record. It runs as a separate process (this bench
//! binary re-executed with [`STUB_FLAG`]) so that its CPU time is its own, and
//! it exits when its stdin closes, so it cannot outlive the harness.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io::Read as _;
use std::process::ExitCode;

/// First argument that turns the bench binary into the stub upstream.
pub const STUB_FLAG: &str = "__stub-upstream";

/// Size of the record the stub answers with.
pub const RECORD_BYTES: usize = 1024;

/// The record the stub answers: an object of 10 fields, exactly
/// [`RECORD_BYTES`] bytes of compact JSON, identical on every call.
pub fn record() -> Vec<u8> {
    let mut record = serde_json::json!({
        "record_id": "001085012345",
        "full_name": "Nguyễn Thị Lan",
        "date_of_birth": "1985-03-02",
        "sex": "F",
        "nationality": "VN",
        "ethnicity": "Kinh",
        "phone": "0912345678",
        "email": "lan.nguyen@example.invalid",
        "address": {"province": "Hà Nội", "district": "Quận Ba Đình",
                    "ward": "Phường Điện Biên", "street": "Số 12 Hoàng Diệu"},
        "remarks": "",
    });
    let unpadded = serde_json::to_vec(&record).unwrap_or_default().len();
    record["remarks"] =
        serde_json::Value::String("x".repeat(RECORD_BYTES.saturating_sub(unpadded)));
    serde_json::to_vec(&record).unwrap_or_default()
}

/// Runs the stub: `__stub-upstream PORT`. Serves until stdin closes.
pub fn main(args: &[String]) -> ExitCode {
    let Some(port) = args.first().and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!("usage: {STUB_FLAG} PORT");
        return ExitCode::from(2);
    };
    // The harness holds our stdin; when it goes away (even killed), we go too.
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("stub: cannot start a runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(port)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("stub: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(port: u16) -> anyhow::Result<()> {
    let body = Bytes::from(record());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(error) => {
                // Out of descriptors and the like: back off, keep serving.
                eprintln!("stub: accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_request: Request<Incoming>| {
                let body = body.clone();
                async move {
                    let mut response = Response::new(Full::new(body));
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
