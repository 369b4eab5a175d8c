//! The open-data catalog page: `GET /` on the public listener and `GET /opendata/v1/` for
//! members. One server-rendered HTML page (askama, escaped by the template engine), in
//! Vietnamese by default and in English with `?lang=en` or an `Accept-Language` that
//! prefers English; no JavaScript and nothing fetched from elsewhere (the styles are
//! inline). It lists each dataset's metadata (title, description, publisher, licence,
//! update frequency, retention, provenance, attribution, keywords, fields), its downloads
//! and API links, and the node's shared-data services (their ids and descriptions only).
//!
//! Text that exists only in Vietnamese (publisher names, field titles, attribution, and a
//! title or description with no English version) carries `lang="vi"` on an English page,
//! so screen readers pronounce it right.
//!
//! Owns: the page's view of the catalog, the choice of language, its words.
//!
//! Does not own: which datasets an edge shows and its limits (`opendata`), the catalog's
//! labels and services list, shared with DCAT (`dcat`).

use super::Gateway;
use super::dcat::{self, Language, SharedService};
use super::opendata::Edge;
use askama::Template;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// `/` for `edge` (merged into the open-data routes).
pub fn routes(edge: Edge) -> axum::Router<Arc<Gateway>> {
    axum::Router::new().route(
        "/",
        axum::routing::get(
            move |State(gateway): State<Arc<Gateway>>, request: Request| async move {
                page(&gateway, edge, &request)
            },
        ),
    )
}

/// `/opendata/v1/` on the consumer listener: a router nested at `/opendata/v1` answers
/// its `/` only without the trailing slash, and the page's address ends with one.
pub fn member_index() -> axum::Router<Arc<Gateway>> {
    axum::Router::new().route(
        "/opendata/v1/",
        axum::routing::get(
            |State(gateway): State<Arc<Gateway>>, request: Request| async move {
                page(&gateway, Edge::Members, &request)
            },
        ),
    )
}

/// The page's words in one language.
struct Words {
    title: &'static str,
    intro: &'static str,
    skip: &'static str,
    languages: &'static str,
    machine_readable: &'static str,
    datasets: &'static str,
    no_datasets: &'static str,
    publisher: &'static str,
    licence: &'static str,
    frequency: &'static str,
    retention: &'static str,
    provenance: &'static str,
    attribution: &'static str,
    keywords: &'static str,
    rows: &'static str,
    fields: &'static str,
    field_name: &'static str,
    field_type: &'static str,
    field_title: &'static str,
    field_description: &'static str,
    downloads: &'static str,
    api: &'static str,
    package_show: &'static str,
    datastore_search: &'static str,
    package_list: &'static str,
    services: &'static str,
    services_intro: &'static str,
    no_services: &'static str,
    service_id: &'static str,
    service_description: &'static str,
    members_notice: &'static str,
}

const VI: Words = Words {
    title: "Dữ liệu mở",
    intro: "Các bộ dữ liệu mở do cơ quan công bố: tải về tự do theo giấy phép ghi kèm, hoặc truy vấn qua API.",
    skip: "Bỏ qua, tới nội dung chính",
    languages: "Ngôn ngữ",
    machine_readable: "Danh mục cho máy đọc",
    datasets: "Bộ dữ liệu",
    no_datasets: "Chưa có bộ dữ liệu nào được công bố.",
    publisher: "Cơ quan công bố",
    licence: "Giấy phép",
    frequency: "Tần suất cập nhật",
    retention: "Thời hạn lưu giữ mỗi phiên bản",
    provenance: "Nguồn gốc dữ liệu",
    attribution: "Ghi nguồn khi sử dụng",
    keywords: "Từ khóa",
    rows: "Số bản ghi",
    fields: "Các trường dữ liệu",
    field_name: "Tên trường",
    field_type: "Kiểu",
    field_title: "Tiêu đề",
    field_description: "Mô tả",
    downloads: "Tải về",
    api: "API",
    package_show: "Siêu dữ liệu (CKAN package_show)",
    datastore_search: "Truy vấn bản ghi (CKAN datastore_search)",
    package_list: "Danh sách bộ dữ liệu (CKAN package_list)",
    services: "Dịch vụ chia sẻ dữ liệu",
    services_intro: "Các dịch vụ mà các cơ quan thành viên gọi qua nền tảng chia sẻ dữ liệu, khi có thỏa thuận chia sẻ dữ liệu. Trang này chỉ nêu siêu dữ liệu, không có dữ liệu.",
    no_services: "Nút này không cung cấp dịch vụ chia sẻ dữ liệu nào.",
    service_id: "Mã dịch vụ",
    service_description: "Mô tả",
    members_notice: "Trang dành cho cơ quan thành viên: gồm cả các bộ dữ liệu chỉ chia sẻ cho thành viên.",
};

const EN: Words = Words {
    title: "Open data",
    intro: "Open datasets published by the agency: download them freely under the licence given with each, or query them through the API.",
    skip: "Skip to the main content",
    languages: "Language",
    machine_readable: "Machine-readable catalog",
    datasets: "Datasets",
    no_datasets: "No dataset is published yet.",
    publisher: "Publisher",
    licence: "Licence",
    frequency: "Update frequency",
    retention: "Each version is kept",
    provenance: "Provenance",
    attribution: "Attribution required",
    keywords: "Keywords",
    rows: "Records",
    fields: "Fields",
    field_name: "Name",
    field_type: "Type",
    field_title: "Title",
    field_description: "Description",
    downloads: "Downloads",
    api: "API",
    package_show: "Metadata (CKAN package_show)",
    datastore_search: "Query the records (CKAN datastore_search)",
    package_list: "List of datasets (CKAN package_list)",
    services: "Shared-data services",
    services_intro: "Services member agencies call through the data-sharing platform under a data-sharing agreement. This page gives their metadata only, never their data.",
    no_services: "This node offers no shared-data service.",
    service_id: "Service id",
    service_description: "Description",
    members_notice: "For member agencies: includes the datasets shared with members only.",
};

/// A text and the language it is in, when that is not the page's.
struct Text {
    text: String,
    /// `Some("vi")` when the page is English and the text exists only in Vietnamese.
    lang: Option<&'static str>,
}

struct FieldView {
    name: String,
    kind: &'static str,
    title: String,
    description: String,
}

struct DatasetView {
    id: String,
    title: Text,
    description: Text,
    publisher: String,
    publisher_id: String,
    licence_title: String,
    licence_url: String,
    frequency: &'static str,
    retention: String,
    provenance: &'static str,
    attribution: String,
    keywords: Vec<String>,
    rows: u64,
    fields: Vec<FieldView>,
    csv: String,
    json: String,
    package_show: String,
    datastore_search: String,
}

#[derive(Template)]
#[template(path = "opendata/catalog.html")]
struct CatalogPage {
    lang: &'static str,
    words: &'static Words,
    members: bool,
    datasets: Vec<DatasetView>,
    services: Vec<SharedService>,
    jsonld: String,
    turtle: String,
    package_list: String,
}

/// The page's language: `?lang=vi|en` first, then the `Accept-Language` entry with the
/// highest weight among Vietnamese and English (the first listed on a tie), else Vietnamese.
pub fn choose_language(query: Option<&str>, headers: &HeaderMap) -> Language {
    let asked = query.and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "lang")
            .and_then(|(_, value)| match value.as_ref() {
                "vi" => Some(Language::Vi),
                "en" => Some(Language::En),
                _ => None,
            })
    });
    if let Some(language) = asked {
        return language;
    }
    let mut best: Option<(u16, Language)> = None;
    for entry in headers
        .get_all(header::ACCEPT_LANGUAGE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
    {
        let mut parts = entry.split(';');
        let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let primary = tag.split('-').next().unwrap_or_default();
        let language = match primary {
            "vi" => Language::Vi,
            "en" => Language::En,
            _ => continue,
        };
        // Weights in thousandths (RFC 9110 §12.4.2: at most three decimals).
        let weight = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .map_or(1000, |q| (q.clamp(0.0, 1.0) * 1000.0).round() as u16);
        if weight > 0 && best.is_none_or(|(w, _)| weight > w) {
            best = Some((weight, language));
        }
    }
    best.map_or(Language::Vi, |(_, language)| language)
}

fn page(gateway: &Gateway, edge: Edge, request: &Request) -> Response {
    metrics::counter!("datagate_opendata_requests_total", "action" => "catalog_page", "edge" => dcat::edge_label(edge)).increment(1);
    let catalog = gateway.catalog();
    if let Err(error) = super::opendata::admit(
        gateway,
        &catalog,
        edge,
        (request.headers(), request.extensions()),
        None,
    ) {
        metrics::counter!("datagate_refusals_total", "code" => error.code().as_str()).increment(1);
        return error.into_problem(None);
    }
    let language = choose_language(request.uri().query(), request.headers());
    let (lang, words) = match language {
        Language::Vi => ("vi", &VI),
        Language::En => ("en", &EN),
    };
    let prefix = match edge {
        Edge::Public => "",
        Edge::Members => "/opendata/v1",
    };
    let only_vi = match language {
        Language::Vi => None,
        Language::En => Some("vi"),
    };
    let datasets = catalog
        .visible(edge)
        .map(|published| {
            let dataset = &published.dataset;
            let raw = &dataset.raw;
            let id = dataset.id();
            let localised = |vi: &str, en: &Option<String>| match (language, en) {
                (Language::En, Some(en)) => Text {
                    text: en.clone(),
                    lang: None,
                },
                _ => Text {
                    text: vi.to_owned(),
                    lang: only_vi,
                },
            };
            DatasetView {
                id: id.to_owned(),
                title: localised(&raw.title, &raw.title_en),
                description: localised(&raw.description, &raw.description_en),
                publisher: raw.publisher_name.clone(),
                publisher_id: dataset.publisher.to_string(),
                licence_title: raw.licence.title.clone(),
                licence_url: raw.licence.url.clone(),
                frequency: dcat::frequency_label(raw.update_frequency, language),
                retention: dcat::retention_label(raw.retention_months, language),
                provenance: dcat::provenance_label(raw.provenance, language),
                attribution: raw.attribution.clone(),
                keywords: raw.keywords.clone(),
                rows: published.table().rows(),
                fields: raw
                    .fields
                    .iter()
                    .map(|field| FieldView {
                        name: field.name.clone(),
                        kind: dcat::field_type_label(field.kind, language),
                        title: field.title.clone(),
                        description: field.description.clone().unwrap_or_default(),
                    })
                    .collect(),
                csv: format!("{prefix}/dataset/{id}.csv"),
                json: format!("{prefix}/dataset/{id}.json"),
                package_show: format!("{prefix}/api/3/action/package_show?id={id}"),
                datastore_search: format!(
                    "{prefix}/api/3/action/datastore_search?resource_id={id}"
                ),
            }
        })
        .collect();
    let rendered = CatalogPage {
        lang,
        words,
        members: edge == Edge::Members,
        datasets,
        services: dcat::shared_services(gateway),
        jsonld: format!("{prefix}/catalog.jsonld"),
        turtle: format!("{prefix}/catalog.ttl"),
        package_list: format!("{prefix}/api/3/action/package_list"),
    }
    .render();
    match rendered {
        Ok(html) => {
            let mut response = html.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            headers.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(lang));
            headers.insert(header::VARY, HeaderValue::from_static("Accept-Language"));
            headers.insert(header::CACHE_CONTROL, dcat::cache_control(edge));
            response
        }
        Err(error) => {
            tracing::error!(error = %error, "the open-data catalog page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_str(value).expect("header"),
        );
        headers
    }

    #[test]
    fn vietnamese_unless_english_is_asked_for_or_preferred() {
        assert_eq!(choose_language(None, &HeaderMap::new()), Language::Vi);
        assert_eq!(
            choose_language(Some("lang=en"), &HeaderMap::new()),
            Language::En
        );
        assert_eq!(
            choose_language(Some("lang=vi"), &accept("en")),
            Language::Vi
        );
        assert_eq!(
            choose_language(Some("lang=fr"), &accept("en-GB")),
            Language::En
        );
        assert_eq!(
            choose_language(None, &accept("en-US,en;q=0.9")),
            Language::En
        );
        assert_eq!(
            choose_language(None, &accept("en;q=0.5, vi;q=0.8")),
            Language::Vi
        );
        assert_eq!(choose_language(None, &accept("fr, en;q=0.3")), Language::En);
        assert_eq!(choose_language(None, &accept("fr, de")), Language::Vi);
        assert_eq!(choose_language(None, &accept("en;q=0")), Language::Vi);
        assert_eq!(choose_language(None, &accept("vi, en")), Language::Vi);
    }
}
