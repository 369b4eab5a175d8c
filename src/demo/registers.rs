//! Two synthetic national databases that `datagate demo` puts behind the gateway.
//!
//! This module owns the demo back ends only: a population register
//! ([`PopulationRegister`], 500 citizens, SOAP 1.1 over HTTP, like the legacy
//! national population database service) and an enterprise register
//! ([`EnterpriseRegister`], 300 enterprises, REST/JSON, like the national
//! business registration portal). Each serves its data through an
//! [`axum::Router`].
//!
//! It does **not** own anything about the gateway: no TLS, no contracts, no
//! journal, no adapters. The gateway talks to these routers over plain HTTP
//! exactly as it would talk to a real agency system.
//!
//! All data is synthetic: generated once, at construction, by a small seeded
//! PRNG (splitmix64), so every run produces the same people and companies.
//! Any resemblance to real persons, identity numbers or tax codes is
//! coincidental. Enterprise legal representatives are adult citizens of the
//! synthetic population register, so the two registers can be joined in demos.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use quick_xml::escape::escape;
use quick_xml::events::Event;

/// Number of citizens in [`PopulationRegister::synthetic`].
const CITIZEN_COUNT: usize = 500;
/// Number of enterprises in [`EnterpriseRegister::synthetic`].
const ENTERPRISE_COUNT: usize = 300;
/// Seed of the population generator.
const POPULATION_SEED: u64 = 0x0da7_a6a7_e000_0001;
/// Seed of the enterprise generator.
const ENTERPRISE_SEED: u64 = 0x0da7_a6a7_e000_0002;

const SOAP_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const POPULATION_NS: &str = "urn:vn:gov:population:1";
const XML_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

// ---------------------------------------------------------------------------
// Deterministic randomness
// ---------------------------------------------------------------------------

/// splitmix64 (Steele, Lea & Flood 2014): tiny, seedable, good enough for
/// synthetic data. Not for anything security related.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (modulo bias is irrelevant here); `n` must be > 0.
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform-ish in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        // Callers only pass the non-empty constant tables below.
        &items[self.below(items.len() as u64) as usize]
    }

    /// Picks from `(item, weight)` pairs with probability proportional to weight.
    fn weighted<'a, T>(&mut self, items: &'a [(T, u64)]) -> &'a T {
        let total: u64 = items.iter().map(|(_, w)| w).sum();
        let mut roll = self.below(total);
        for (item, weight) in items {
            if roll < *weight {
                return item;
            }
            roll -= weight;
        }
        // Unreachable for non-empty tables; fall back to the first item.
        &items[0].0
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Geography and names
// ---------------------------------------------------------------------------

struct District {
    name: &'static str,
    wards: &'static [&'static str],
    streets: &'static [&'static str],
}

struct Province {
    name: &'static str,
    /// Province code as used in the first three digits of a CCCD number.
    cccd_code: &'static str,
    /// Two-digit prefix used for synthetic tax codes registered here.
    tax_prefix: &'static str,
    /// Relative population weight.
    weight: u64,
    /// Hà Nội numbers houses "Số 5, ngõ 12, phố X"; the south uses "hẻm" (12/5 X).
    south: bool,
    districts: &'static [District],
}

const PROVINCES: &[Province] = &[
    Province {
        name: "Hà Nội",
        cccd_code: "001",
        tax_prefix: "01",
        weight: 24,
        south: false,
        districts: &[
            District {
                name: "Quận Ba Đình",
                wards: &[
                    "Phường Điện Biên",
                    "Phường Kim Mã",
                    "Phường Ngọc Hà",
                    "Phường Liễu Giai",
                    "Phường Cống Vị",
                ],
                streets: &[
                    "Kim Mã",
                    "Đội Cấn",
                    "Liễu Giai",
                    "Hoàng Hoa Thám",
                    "Nguyễn Thái Học",
                ],
            },
            District {
                name: "Quận Hoàn Kiếm",
                wards: &[
                    "Phường Hàng Bạc",
                    "Phường Tràng Tiền",
                    "Phường Hàng Trống",
                    "Phường Phan Chu Trinh",
                ],
                streets: &[
                    "Hàng Bạc",
                    "Tràng Tiền",
                    "Hàng Gai",
                    "Lý Thường Kiệt",
                    "Đinh Tiên Hoàng",
                ],
            },
            District {
                name: "Quận Cầu Giấy",
                wards: &[
                    "Phường Dịch Vọng",
                    "Phường Quan Hoa",
                    "Phường Nghĩa Đô",
                    "Phường Yên Hòa",
                ],
                streets: &[
                    "Xuân Thủy",
                    "Trần Duy Hưng",
                    "Cầu Giấy",
                    "Hoàng Quốc Việt",
                    "Trung Kính",
                ],
            },
            District {
                name: "Quận Đống Đa",
                wards: &[
                    "Phường Văn Miếu",
                    "Phường Láng Hạ",
                    "Phường Ô Chợ Dừa",
                    "Phường Khâm Thiên",
                ],
                streets: &[
                    "Láng Hạ",
                    "Tôn Đức Thắng",
                    "Khâm Thiên",
                    "Nguyễn Lương Bằng",
                    "Xã Đàn",
                ],
            },
            District {
                name: "Quận Long Biên",
                wards: &["Phường Bồ Đề", "Phường Ngọc Lâm", "Phường Gia Thụy"],
                streets: &["Nguyễn Văn Cừ", "Ngọc Lâm", "Nguyễn Văn Linh"],
            },
        ],
    },
    Province {
        name: "Thành phố Hồ Chí Minh",
        cccd_code: "079",
        tax_prefix: "03",
        weight: 28,
        south: true,
        districts: &[
            District {
                name: "Quận 1",
                wards: &[
                    "Phường Bến Nghé",
                    "Phường Bến Thành",
                    "Phường Đa Kao",
                    "Phường Tân Định",
                ],
                streets: &[
                    "Lê Lợi",
                    "Nguyễn Huệ",
                    "Đồng Khởi",
                    "Hai Bà Trưng",
                    "Pasteur",
                ],
            },
            District {
                name: "Quận 3",
                wards: &["Phường Võ Thị Sáu", "Phường 4", "Phường 9"],
                streets: &["Nam Kỳ Khởi Nghĩa", "Cách Mạng Tháng Tám", "Võ Văn Tần"],
            },
            District {
                name: "Quận Bình Thạnh",
                wards: &["Phường 15", "Phường 22", "Phường 25"],
                streets: &[
                    "Xô Viết Nghệ Tĩnh",
                    "Điện Biên Phủ",
                    "Nguyễn Hữu Cảnh",
                    "Bạch Đằng",
                ],
            },
            District {
                name: "Thành phố Thủ Đức",
                wards: &["Phường Thảo Điền", "Phường An Phú", "Phường Linh Trung"],
                streets: &["Xa lộ Hà Nội", "Võ Văn Ngân", "Quốc Hương"],
            },
        ],
    },
    Province {
        name: "Đà Nẵng",
        cccd_code: "048",
        tax_prefix: "04",
        weight: 8,
        south: false,
        districts: &[
            District {
                name: "Quận Hải Châu",
                wards: &[
                    "Phường Hải Châu I",
                    "Phường Thạch Thang",
                    "Phường Hòa Cường Bắc",
                ],
                streets: &["Bạch Đằng", "Lê Duẩn", "Trần Phú", "Nguyễn Văn Linh"],
            },
            District {
                name: "Quận Sơn Trà",
                wards: &["Phường An Hải Bắc", "Phường Phước Mỹ", "Phường Mân Thái"],
                streets: &["Võ Nguyên Giáp", "Ngô Quyền", "Phạm Văn Đồng"],
            },
            District {
                name: "Quận Thanh Khê",
                wards: &["Phường Thạc Gián", "Phường Chính Gián", "Phường Tân Chính"],
                streets: &["Điện Biên Phủ", "Hùng Vương", "Lê Duẩn"],
            },
        ],
    },
    Province {
        name: "Hải Phòng",
        cccd_code: "031",
        tax_prefix: "02",
        weight: 8,
        south: false,
        districts: &[
            District {
                name: "Quận Hồng Bàng",
                wards: &[
                    "Phường Hoàng Văn Thụ",
                    "Phường Minh Khai",
                    "Phường Quang Trung",
                ],
                streets: &["Điện Biên Phủ", "Hoàng Văn Thụ", "Minh Khai"],
            },
            District {
                name: "Quận Lê Chân",
                wards: &["Phường An Biên", "Phường Cát Dài", "Phường Dư Hàng Kênh"],
                streets: &["Tô Hiệu", "Lạch Tray", "Nguyễn Đức Cảnh"],
            },
            District {
                name: "Quận Ngô Quyền",
                wards: &["Phường Máy Tơ", "Phường Lạch Tray", "Phường Đằng Giang"],
                streets: &["Lạch Tray", "Lê Lợi", "Văn Cao"],
            },
        ],
    },
    Province {
        name: "Cần Thơ",
        cccd_code: "092",
        tax_prefix: "18",
        weight: 6,
        south: true,
        districts: &[
            District {
                name: "Quận Ninh Kiều",
                wards: &[
                    "Phường Tân An",
                    "Phường An Hòa",
                    "Phường Xuân Khánh",
                    "Phường Hưng Lợi",
                ],
                streets: &["Hai Bà Trưng", "30 Tháng 4", "Mậu Thân", "Nguyễn Văn Cừ"],
            },
            District {
                name: "Quận Bình Thủy",
                wards: &["Phường Bình Thủy", "Phường An Thới", "Phường Trà Nóc"],
                streets: &["Cách Mạng Tháng Tám", "Lê Hồng Phong"],
            },
        ],
    },
    Province {
        name: "Quảng Ninh",
        cccd_code: "022",
        tax_prefix: "57",
        weight: 4,
        south: false,
        districts: &[District {
            name: "Thành phố Hạ Long",
            wards: &["Phường Bạch Đằng", "Phường Hồng Gai", "Phường Bãi Cháy"],
            streets: &["Hạ Long", "Trần Hưng Đạo", "Lê Thánh Tông"],
        }],
    },
    Province {
        name: "Nghệ An",
        cccd_code: "040",
        tax_prefix: "29",
        weight: 5,
        south: false,
        districts: &[District {
            name: "Thành phố Vinh",
            wards: &[
                "Phường Hưng Bình",
                "Phường Lê Mao",
                "Phường Quang Trung",
                "Phường Bến Thủy",
            ],
            streets: &["Lê Lợi", "Quang Trung", "Nguyễn Du", "Trường Thi"],
        }],
    },
    Province {
        name: "Thanh Hóa",
        cccd_code: "038",
        tax_prefix: "28",
        weight: 5,
        south: false,
        districts: &[District {
            name: "Thành phố Thanh Hóa",
            wards: &["Phường Điện Biên", "Phường Lam Sơn", "Phường Ba Đình"],
            streets: &["Lê Lợi", "Trần Phú", "Hạc Thành"],
        }],
    },
    Province {
        name: "Khánh Hòa",
        cccd_code: "056",
        tax_prefix: "42",
        weight: 3,
        south: true,
        districts: &[District {
            name: "Thành phố Nha Trang",
            wards: &["Phường Lộc Thọ", "Phường Tân Lập", "Phường Vĩnh Hải"],
            streets: &["Trần Phú", "Thái Nguyên", "Yersin"],
        }],
    },
    Province {
        name: "Lâm Đồng",
        cccd_code: "068",
        tax_prefix: "58",
        weight: 3,
        south: true,
        districts: &[District {
            name: "Thành phố Đà Lạt",
            wards: &["Phường 1", "Phường 2", "Phường 10"],
            streets: &["Trần Phú", "Phan Đình Phùng", "Hùng Vương"],
        }],
    },
    Province {
        name: "Bình Dương",
        cccd_code: "074",
        tax_prefix: "37",
        weight: 4,
        south: true,
        districts: &[District {
            name: "Thành phố Thủ Dầu Một",
            wards: &["Phường Phú Cường", "Phường Hiệp Thành", "Phường Phú Hòa"],
            streets: &["Yersin", "Đại lộ Bình Dương", "Cách Mạng Tháng Tám"],
        }],
    },
    Province {
        name: "Đồng Nai",
        cccd_code: "075",
        tax_prefix: "36",
        weight: 4,
        south: true,
        districts: &[District {
            name: "Thành phố Biên Hòa",
            wards: &[
                "Phường Tân Phong",
                "Phường Trung Dũng",
                "Phường Quyết Thắng",
            ],
            streets: &["Phạm Văn Thuận", "Võ Thị Sáu", "30 Tháng 4"],
        }],
    },
    Province {
        name: "An Giang",
        cccd_code: "089",
        tax_prefix: "16",
        weight: 3,
        south: true,
        districts: &[District {
            name: "Thành phố Long Xuyên",
            wards: &["Phường Mỹ Bình", "Phường Mỹ Long", "Phường Mỹ Xuyên"],
            streets: &["Trần Hưng Đạo", "Hai Bà Trưng", "Nguyễn Huệ"],
        }],
    },
];

/// Family names with rough relative frequencies.
const FAMILY_NAMES: &[(&str, u64)] = &[
    ("Nguyễn", 38),
    ("Trần", 11),
    ("Lê", 9),
    ("Phạm", 7),
    ("Hoàng", 5),
    ("Huỳnh", 4),
    ("Phan", 4),
    ("Vũ", 4),
    ("Võ", 3),
    ("Đặng", 2),
    ("Bùi", 2),
    ("Đỗ", 2),
    ("Hồ", 1),
    ("Ngô", 1),
    ("Dương", 1),
    ("Lý", 1),
    ("Đinh", 1),
    ("Trương", 1),
];
const MALE_MIDDLE: &[&str] = &[
    "Văn", "Văn", "Văn", "Đức", "Minh", "Quang", "Hữu", "Thành", "Công", "Xuân", "Tuấn", "Ngọc",
    "Gia", "Hoàng",
];
const FEMALE_MIDDLE: &[&str] = &[
    "Thị", "Thị", "Thị", "Thị", "Ngọc", "Thu", "Thanh", "Minh", "Phương", "Hồng", "Bảo", "Khánh",
    "Mai",
];
const MALE_GIVEN: &[&str] = &[
    "Anh", "Bình", "Cường", "Dũng", "Đạt", "Hải", "Hùng", "Huy", "Khoa", "Long", "Minh", "Nam",
    "Phong", "Phúc", "Quân", "Sơn", "Thắng", "Trung", "Tuấn", "Việt", "Hiếu", "Tùng", "Toàn",
    "Kiên",
];
const FEMALE_GIVEN: &[&str] = &[
    "Anh", "Chi", "Dung", "Giang", "Hà", "Hạnh", "Hằng", "Hoa", "Hương", "Lan", "Linh", "Mai",
    "Ngân", "Ngọc", "Nhung", "Oanh", "Phương", "Quỳnh", "Thảo", "Trang", "Tuyết", "Vân", "Yến",
    "Thủy",
];
/// Ethnic groups with rough relative frequencies (Kinh is the large majority).
const ETHNICITIES: &[(&str, u64)] = &[
    ("Kinh", 86),
    ("Tày", 2),
    ("Thái", 2),
    ("Mường", 2),
    ("Khmer", 2),
    ("H'Mông", 2),
    ("Nùng", 1),
    ("Hoa", 1),
    ("Dao", 1),
    ("Ê Đê", 1),
];
const HOUSEHOLD_SIZES: &[(u8, u64)] = &[(1, 8), (2, 14), (3, 22), (4, 26), (5, 16), (6, 9), (7, 5)];

fn pick_province(rng: &mut SplitMix64) -> &'static Province {
    let total: u64 = PROVINCES.iter().map(|p| p.weight).sum();
    let mut roll = rng.below(total);
    for province in PROVINCES {
        if roll < province.weight {
            return province;
        }
        roll -= province.weight;
    }
    &PROVINCES[0]
}

fn house_address(rng: &mut SplitMix64, province: &Province, street: &str) -> String {
    let number = rng.range(1, 220);
    match (province.south, rng.below(3)) {
        (_, 0) => format!("Số {number} {street}"),
        (false, _) => format!("Số {number}, ngõ {}, {street}", rng.range(2, 180)),
        (true, _) => format!("{}/{number} {street}", rng.range(2, 450)),
    }
}

// ---------------------------------------------------------------------------
// Population register
// ---------------------------------------------------------------------------

/// Sex as recorded in the population register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sex {
    Male,
    Female,
}

impl Sex {
    fn code(self) -> &'static str {
        match self {
            Sex::Male => "M",
            Sex::Female => "F",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Address {
    province: String,
    district: String,
    ward: String,
    street: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Citizen {
    citizen_id: String,
    full_name: String,
    /// `YYYY-MM-DD`.
    date_of_birth: String,
    birth_year: u16,
    sex: Sex,
    address: Address,
    ethnicity: String,
    nationality: String,
    household_size: u8,
}

fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn generate_citizens(seed: u64, count: usize) -> Vec<Citizen> {
    let mut rng = SplitMix64(seed);
    let mut ids = HashSet::with_capacity(count);
    let mut citizens = Vec::with_capacity(count);
    while citizens.len() < count {
        let sex = if rng.chance(50) {
            Sex::Male
        } else {
            Sex::Female
        };
        let family = rng.weighted(FAMILY_NAMES);
        let (middle, given) = match sex {
            Sex::Male => (rng.pick(MALE_MIDDLE), rng.pick(MALE_GIVEN)),
            Sex::Female => (rng.pick(FEMALE_MIDDLE), rng.pick(FEMALE_GIVEN)),
        };
        let full_name = format!("{family} {middle} {given}");

        let year = rng.range(1940, 2007) as u16;
        let month = rng.range(1, 12) as u8;
        let day = rng.range(1, u64::from(days_in_month(year, month))) as u8;

        let home = pick_province(&mut rng);
        // Most people still live in the province where they were born (which
        // is what the CCCD prefix encodes); some have moved.
        let birth_province = if rng.chance(80) {
            home
        } else {
            pick_province(&mut rng)
        };
        let district = rng.pick(home.districts);
        let ward = rng.pick(district.wards);
        let street = rng.pick(district.streets);
        let street = house_address(&mut rng, home, street);

        // CCCD: province (3) + century/sex (1) + year (2) + random (6).
        let century_sex = match (year >= 2000, sex) {
            (false, Sex::Male) => 0,
            (false, Sex::Female) => 1,
            (true, Sex::Male) => 2,
            (true, Sex::Female) => 3,
        };
        let citizen_id = format!(
            "{}{century_sex}{:02}{}",
            birth_province.cccd_code,
            year % 100,
            rng.digits(6)
        );
        if !ids.insert(citizen_id.clone()) {
            continue;
        }

        citizens.push(Citizen {
            citizen_id,
            full_name,
            date_of_birth: format!("{year:04}-{month:02}-{day:02}"),
            birth_year: year,
            sex,
            address: Address {
                province: home.name.to_owned(),
                district: district.name.to_owned(),
                ward: (*ward).to_owned(),
                street,
            },
            ethnicity: (*rng.weighted(ETHNICITIES)).to_owned(),
            nationality: "VN".to_owned(),
            household_size: *rng.weighted(HOUSEHOLD_SIZES),
        });
    }
    citizens
}

/// `n` entries spread evenly over `items` (all of them if `n >= items.len()`).
fn spread<T, U>(items: &[T], n: usize, f: impl Fn(&T) -> U) -> Vec<U> {
    let n = n.min(items.len());
    (0..n).map(|i| f(&items[i * items.len() / n])).collect()
}

/// The administrative units the synthetic registers use, as CSV (an open dataset of the
/// demo): a code, the province, the district, the ward.
pub fn administrative_units_csv() -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record(["code", "province", "district", "ward"]);
    for province in PROVINCES {
        for (d, district) in province.districts.iter().enumerate() {
            for (w, ward) in district.wards.iter().enumerate() {
                let code = format!("{}{:02}{:02}", province.cccd_code, d + 1, w + 1);
                let _ = writer.write_record([code.as_str(), province.name, district.name, ward]);
            }
        }
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// The provinces' names, in order.
pub fn province_names() -> Vec<&'static str> {
    PROVINCES.iter().map(|p| p.name).collect()
}

/// A synthetic national population database speaking SOAP 1.1.
///
/// Routes (see [`PopulationRegister::router`]):
/// - `POST /soap` — `GetCitizen` (namespace `urn:vn:gov:population:1`);
///   requires `Content-Type: text/xml` and a `SOAPAction` header (any value,
///   conventionally `"urn:vn:gov:population:1#GetCitizen"`).
/// - `GET /health` — `200 ok`.
#[derive(Debug, Clone)]
pub struct PopulationRegister {
    citizens: Vec<Citizen>,
    by_id: HashMap<String, usize>,
}

impl PopulationRegister {
    /// The deterministic synthetic register of 500 citizens (identical on every call).
    pub fn synthetic() -> Self {
        let citizens = generate_citizens(POPULATION_SEED, CITIZEN_COUNT);
        let by_id = citizens
            .iter()
            .enumerate()
            .map(|(i, c)| (c.citizen_id.clone(), i))
            .collect();
        PopulationRegister { citizens, by_id }
    }

    /// Up to `n` existing citizen IDs (12-digit CCCD numbers), spread over the
    /// register; deterministic.
    pub fn sample_citizen_ids(&self, n: usize) -> Vec<String> {
        spread(&self.citizens, n, |c| c.citizen_id.clone())
    }

    /// The register's HTTP interface: `POST /soap` and `GET /health`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/soap", post(soap_endpoint))
            .route("/health", get(health))
            .with_state(self)
    }

    fn get(&self, citizen_id: &str) -> Option<&Citizen> {
        self.by_id.get(citizen_id).map(|&i| &self.citizens[i])
    }
}

async fn health() -> &'static str {
    "ok"
}

async fn soap_endpoint(
    State(register): State<Arc<PopulationRegister>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("text/xml") {
        return soap_fault(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "soap:Client",
            "SOAP 1.1 requires Content-Type: text/xml",
        );
    }
    if !headers.contains_key("soapaction") {
        return soap_fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "soap:Client",
            "missing SOAPAction header",
        );
    }
    let Ok(xml) = std::str::from_utf8(&body) else {
        return soap_fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "soap:Client",
            "request body is not UTF-8",
        );
    };
    let citizen_id = match parse_get_citizen(xml) {
        Ok(id) => id,
        Err(reason) => {
            return soap_fault(StatusCode::INTERNAL_SERVER_ERROR, "soap:Client", &reason);
        }
    };
    match register.get(&citizen_id) {
        Some(citizen) => xml_response(StatusCode::OK, render_citizen_response(citizen)),
        None => soap_fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "soap:Client.NotFound",
            "citizen not found",
        ),
    }
}

/// Extracts the `CitizenId` of a SOAP 1.1 `GetCitizen` request.
///
/// Namespace-agnostic: only local names are checked. Accepts an optional
/// `Header` (contents ignored) and requires `Envelope/Body/GetCitizen/CitizenId`
/// with nothing else in `Body` or `GetCitizen`. DTDs are rejected. Returns a
/// human-readable reason on failure (used as the fault string).
fn parse_get_citizen(xml: &str) -> Result<String, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().expand_empty_elements = true;

    // Local names of the open elements.
    let mut path: Vec<String> = Vec::new();
    let mut seen_envelope = false;
    let mut seen_body = false;
    let mut seen_operation = false;
    let mut citizen_id: Option<String> = None;

    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("malformed XML at byte {}: {e}", reader.error_position()))?;
        let in_header = path.get(1).is_some_and(|n| n == "Header");
        let in_citizen_id = path.len() == 4 && path[3] == "CitizenId";
        match event {
            Event::Start(start) => {
                let name = start.local_name().into_inner().to_owned();
                if !in_header {
                    match path.len() {
                        0 if seen_envelope => {
                            return Err("more than one root element".into());
                        }
                        0 if name != "Envelope" => {
                            return Err(format!("root element is {name}, expected Envelope"));
                        }
                        0 => seen_envelope = true,
                        1 if name == "Header" && !seen_body => {}
                        1 if name == "Body" && !seen_body => seen_body = true,
                        1 => return Err(format!("unexpected element {name} in Envelope")),
                        2 if name == "GetCitizen" && !seen_operation => seen_operation = true,
                        2 if seen_operation => {
                            return Err("Body must contain exactly one operation".into());
                        }
                        2 => return Err(format!("unsupported operation {name}")),
                        3 if name == "CitizenId" && citizen_id.is_none() => {
                            citizen_id = Some(String::new());
                        }
                        3 => return Err(format!("unexpected element {name} in GetCitizen")),
                        _ => return Err(format!("unexpected element {name} in CitizenId")),
                    }
                }
                path.push(name);
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(text) => {
                let content = text.xml10_content();
                if in_citizen_id {
                    if let Some(id) = citizen_id.as_mut() {
                        id.push_str(&content);
                    }
                } else if !in_header && !content.trim().is_empty() {
                    return Err("unexpected text content".into());
                }
            }
            Event::CData(cdata) => {
                if in_citizen_id {
                    if let Some(id) = citizen_id.as_mut() {
                        id.push_str(&cdata.xml10_content());
                    }
                } else if !in_header {
                    return Err("unexpected CDATA".into());
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => quick_xml::escape::resolve_predefined_entity(&reference)
                        .ok_or_else(|| format!("undefined entity &{};", &*reference))?
                        .to_owned(),
                    Err(e) => return Err(format!("bad character reference: {e}")),
                };
                if in_citizen_id {
                    if let Some(id) = citizen_id.as_mut() {
                        id.push_str(&resolved);
                    }
                } else if !in_header {
                    return Err("unexpected text content".into());
                }
            }
            // `expand_empty_elements` turns `<a/>` into Start + End.
            Event::Empty(_) => return Err("unexpected empty element".into()),
            Event::DocType(_) => return Err("DTDs are not allowed in SOAP messages".into()),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }

    if !path.is_empty() {
        return Err("unexpected end of document".into());
    }
    if !seen_envelope {
        return Err("no Envelope element".into());
    }
    if !seen_body {
        return Err("no Body element in Envelope".into());
    }
    if !seen_operation {
        return Err("no GetCitizen element in Body".into());
    }
    let id = citizen_id.ok_or("no CitizenId element in GetCitizen")?;
    let id = id.trim();
    if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err("CitizenId must be 12 digits".into());
    }
    Ok(id.to_owned())
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(XML_CONTENT_TYPE),
        )],
        body,
    )
        .into_response()
}

fn soap_fault(status: StatusCode, code: &str, reason: &str) -> Response {
    xml_response(status, render_fault(code, reason))
}

fn render_fault(code: &str, reason: &str) -> String {
    format!(
        "<soap:Envelope xmlns:soap=\"{SOAP_ENV_NS}\"><soap:Body><soap:Fault>\
         <faultcode>{}</faultcode><faultstring>{}</faultstring>\
         </soap:Fault></soap:Body></soap:Envelope>",
        escape(code),
        escape(reason)
    )
}

fn render_citizen_response(c: &Citizen) -> String {
    let a = &c.address;
    format!(
        "<soap:Envelope xmlns:soap=\"{SOAP_ENV_NS}\"><soap:Body>\
         <pop:GetCitizenResponse xmlns:pop=\"{POPULATION_NS}\"><pop:Citizen>\
         <pop:CitizenId>{}</pop:CitizenId>\
         <pop:FullName>{}</pop:FullName>\
         <pop:DateOfBirth>{}</pop:DateOfBirth>\
         <pop:Sex>{}</pop:Sex>\
         <pop:PermanentAddress>\
         <pop:Province>{}</pop:Province>\
         <pop:District>{}</pop:District>\
         <pop:Ward>{}</pop:Ward>\
         <pop:Street>{}</pop:Street>\
         </pop:PermanentAddress>\
         <pop:Ethnicity>{}</pop:Ethnicity>\
         <pop:Nationality>{}</pop:Nationality>\
         <pop:HouseholdSize>{}</pop:HouseholdSize>\
         </pop:Citizen></pop:GetCitizenResponse></soap:Body></soap:Envelope>",
        escape(c.citizen_id.as_str()),
        escape(c.full_name.as_str()),
        escape(c.date_of_birth.as_str()),
        c.sex.code(),
        escape(a.province.as_str()),
        escape(a.district.as_str()),
        escape(a.ward.as_str()),
        escape(a.street.as_str()),
        escape(c.ethnicity.as_str()),
        escape(c.nationality.as_str()),
        c.household_size,
    )
}

// ---------------------------------------------------------------------------
// Enterprise register
// ---------------------------------------------------------------------------

struct LegalForm {
    vi: &'static str,
    en: &'static str,
    weight: u64,
    positions: &'static [&'static str],
    /// Charter capital range, in units of 100 million VND.
    capital: (u64, u64),
}

const LEGAL_FORMS: &[LegalForm] = &[
    LegalForm {
        vi: "Công ty TNHH",
        en: "COMPANY LIMITED",
        weight: 40,
        positions: &["Giám đốc", "Chủ tịch Hội đồng thành viên"],
        capital: (5, 500),
    },
    LegalForm {
        vi: "Công ty TNHH một thành viên",
        en: "ONE MEMBER COMPANY LIMITED",
        weight: 20,
        positions: &["Giám đốc", "Chủ tịch công ty"],
        capital: (5, 300),
    },
    LegalForm {
        vi: "Công ty cổ phần",
        en: "JOINT STOCK COMPANY",
        weight: 32,
        positions: &["Tổng giám đốc", "Chủ tịch Hội đồng quản trị", "Giám đốc"],
        capital: (20, 10_000),
    },
    LegalForm {
        vi: "Doanh nghiệp tư nhân",
        en: "PRIVATE ENTERPRISE",
        weight: 8,
        positions: &["Chủ doanh nghiệp"],
        capital: (1, 50),
    },
];

/// Business line: Vietnamese name part, English name part, VSIC industry codes.
const BUSINESS_LINES: &[(&str, &str, &[&str])] = &[
    ("Thương mại", "TRADING", &["4690", "4649"]),
    (
        "Thương mại & Dịch vụ",
        "TRADING & SERVICES",
        &["4690", "8299"],
    ),
    ("Xây dựng", "CONSTRUCTION", &["4100", "4290", "4330"]),
    (
        "Công nghệ thông tin",
        "INFORMATION TECHNOLOGY",
        &["6201", "6202", "6209"],
    ),
    ("Phần mềm", "SOFTWARE", &["6201", "5820"]),
    ("Vận tải", "TRANSPORT", &["4933", "5229"]),
    ("Thực phẩm", "FOOD", &["1079", "4632"]),
    ("Du lịch", "TRAVEL", &["7911", "5510"]),
    ("Nông sản", "AGRICULTURAL PRODUCTS", &["0150", "4620"]),
    ("Dệt may", "GARMENT", &["1410", "4641"]),
    ("Đầu tư Bất động sản", "REAL ESTATE INVESTMENT", &["6810"]),
    ("Tư vấn Đầu tư", "INVESTMENT CONSULTING", &["7020", "6619"]),
    ("Thiết bị Y tế", "MEDICAL EQUIPMENT", &["4659", "3250"]),
    ("Thủy sản", "SEAFOOD", &["1020", "0321"]),
];

/// Brand names: Vietnamese and unaccented uppercase forms.
const BRANDS: &[(&str, &str)] = &[
    ("Minh Phát", "MINH PHAT"),
    ("Thành Công", "THANH CONG"),
    ("Hoàng Long", "HOANG LONG"),
    ("An Phú", "AN PHU"),
    ("Việt Tiến", "VIET TIEN"),
    ("Sao Mai", "SAO MAI"),
    ("Phú Thịnh", "PHU THINH"),
    ("Hưng Thịnh", "HUNG THINH"),
    ("Đại Dương", "DAI DUONG"),
    ("Bình Minh", "BINH MINH"),
    ("Trường Sơn", "TRUONG SON"),
    ("Hồng Hà", "HONG HA"),
    ("Tân Á", "TAN A"),
    ("Nam Việt", "NAM VIET"),
    ("Kim Long", "KIM LONG"),
    ("Phương Đông", "PHUONG DONG"),
    ("Thái Bình Dương", "THAI BINH DUONG"),
    ("Sông Hồng", "SONG HONG"),
    ("Mekong Xanh", "GREEN MEKONG"),
    ("Lạc Việt", "LAC VIET"),
    ("Hòa Bình", "HOA BINH"),
    ("Thiên Phúc", "THIEN PHUC"),
    ("Đông Á", "DONG A"),
    ("Tràng An", "TRANG AN"),
    ("Gia Khang", "GIA KHANG"),
];

const STATUSES: &[(EnterpriseStatus, u64)] = &[
    (EnterpriseStatus::Active, 85),
    (EnterpriseStatus::Suspended, 10),
    (EnterpriseStatus::Dissolved, 5),
];

/// Weights of the 10-digit tax code's mod-11 check digit, in the style of
/// Vietnamese tax codes (mã số thuế).
const TAX_CODE_WEIGHTS: [u32; 9] = [31, 29, 23, 19, 17, 13, 7, 5, 3];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum EnterpriseStatus {
    Active,
    Suspended,
    Dissolved,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct EnterpriseAddress {
    province: String,
    district: String,
    street: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct LegalRepresentative {
    full_name: String,
    citizen_id: String,
    position: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct Enterprise {
    tax_code: String,
    name: String,
    international_name: String,
    legal_form: String,
    /// `YYYY-MM-DD`.
    registered_on: String,
    status: EnterpriseStatus,
    address: EnterpriseAddress,
    legal_representative: LegalRepresentative,
    charter_capital_vnd: u64,
    industry_codes: Vec<String>,
}

/// Returns the check digit for the first nine digits, or `None` if this
/// prefix has no valid check digit (mod-11 remainder of 0).
fn tax_check_digit(first9: &str) -> Option<char> {
    let sum: u32 = first9
        .bytes()
        .zip(TAX_CODE_WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    let check = 10 - sum % 11;
    (check < 10).then(|| char::from(b'0' + check as u8))
}

fn generate_enterprises(seed: u64, count: usize, people: &[Citizen]) -> Vec<Enterprise> {
    let mut rng = SplitMix64(seed);
    // Legal representatives must be adults when the company is registered.
    let adults: Vec<&Citizen> = people.iter().filter(|c| c.birth_year <= 2001).collect();
    let mut tax_codes = HashSet::with_capacity(count);
    let mut names = HashSet::with_capacity(count);
    let mut enterprises = Vec::with_capacity(count);
    let mut attempts = 0usize;
    while enterprises.len() < count && attempts < count * 100 {
        attempts += 1;
        let province = pick_province(&mut rng);
        let first9 = format!("{}{}", province.tax_prefix, rng.digits(7));
        let Some(check) = tax_check_digit(&first9) else {
            continue;
        };
        let tax_code = format!("{first9}{check}");

        let form = {
            let total: u64 = LEGAL_FORMS.iter().map(|f| f.weight).sum();
            let mut roll = rng.below(total);
            let mut chosen = &LEGAL_FORMS[0];
            for f in LEGAL_FORMS {
                if roll < f.weight {
                    chosen = f;
                    break;
                }
                roll -= f.weight;
            }
            chosen
        };
        let (line_vi, line_en, codes) = rng.pick(BUSINESS_LINES);
        let (brand_vi, brand_en) = rng.pick(BRANDS);
        let name = format!("{} {line_vi} {brand_vi}", form.vi);
        if tax_codes.contains(&tax_code) || names.contains(&name) {
            continue;
        }

        let Some(rep) = adults.get(rng.below(adults.len() as u64) as usize) else {
            break;
        };
        let earliest = (u64::from(rep.birth_year) + 22).max(1995);
        let year = rng.range(earliest.min(2024), 2024) as u16;
        let month = rng.range(1, 12) as u8;
        let day = rng.range(1, u64::from(days_in_month(year, month))) as u8;

        let district = rng.pick(province.districts);
        let street = rng.pick(district.streets);
        let street = format!(
            "{}, {}",
            house_address(&mut rng, province, street),
            rng.pick(district.wards)
        );

        let (lo, hi) = form.capital;
        // Round amounts (whole hundreds of millions), skewed towards small firms.
        let units = if rng.chance(70) {
            rng.range(lo, lo + (hi - lo) / 10)
        } else {
            rng.range(lo, hi)
        };

        tax_codes.insert(tax_code.clone());
        names.insert(name.clone());
        enterprises.push(Enterprise {
            tax_code,
            name,
            international_name: format!("{brand_en} {line_en} {}", form.en),
            legal_form: form.vi.to_owned(),
            registered_on: format!("{year:04}-{month:02}-{day:02}"),
            status: *rng.weighted(STATUSES),
            address: EnterpriseAddress {
                province: province.name.to_owned(),
                district: district.name.to_owned(),
                street,
            },
            legal_representative: LegalRepresentative {
                full_name: rep.full_name.clone(),
                citizen_id: rep.citizen_id.clone(),
                position: (*rng.pick(form.positions)).to_owned(),
            },
            charter_capital_vnd: units * 100_000_000,
            industry_codes: codes.iter().map(|c| (*c).to_owned()).collect(),
        });
    }
    enterprises
}

/// A synthetic national enterprise (business registration) database
/// speaking REST/JSON.
///
/// Routes (see [`EnterpriseRegister::router`]):
/// - `GET /api/v1/enterprises/{tax_code}` — `200` with the enterprise as
///   JSON, `404 {"error":"not_found"}` for an unknown 10-digit code,
///   `400 {"error":"invalid_tax_code"}` if the code is not 10 digits.
/// - `GET /api/v1/representatives/{citizen_id}/enterprises` — `200` with the
///   enterprises the citizen is the legal representative of (their public
///   registration facts only; possibly none), `400 {"error":"invalid_citizen_id"}`
///   if the id is not 12 digits.
/// - `GET /health` — `200 ok`.
#[derive(Debug, Clone)]
pub struct EnterpriseRegister {
    enterprises: Vec<Enterprise>,
    by_tax_code: HashMap<String, usize>,
    by_representative: HashMap<String, Vec<usize>>,
}

impl EnterpriseRegister {
    /// The deterministic synthetic register of 300 enterprises (identical on
    /// every call). Legal representatives are citizens of
    /// [`PopulationRegister::synthetic`].
    pub fn synthetic() -> Self {
        let people = generate_citizens(POPULATION_SEED, CITIZEN_COUNT);
        let enterprises = generate_enterprises(ENTERPRISE_SEED, ENTERPRISE_COUNT, &people);
        let by_tax_code = enterprises
            .iter()
            .enumerate()
            .map(|(i, e)| (e.tax_code.clone(), i))
            .collect();
        let mut by_representative: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, enterprise) in enterprises.iter().enumerate() {
            by_representative
                .entry(enterprise.legal_representative.citizen_id.clone())
                .or_default()
                .push(i);
        }
        EnterpriseRegister {
            enterprises,
            by_tax_code,
            by_representative,
        }
    }

    /// Up to `n` existing 10-digit tax codes, spread over the register;
    /// deterministic. (Includes suspended and dissolved enterprises, which
    /// are still returned with `200`.)
    pub fn sample_tax_codes(&self, n: usize) -> Vec<String> {
        spread(&self.enterprises, n, |e| e.tax_code.clone())
    }

    /// The register's HTTP interface: `GET /api/v1/enterprises/{tax_code}` and `GET /health`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/api/v1/enterprises/{tax_code}", get(enterprise_endpoint))
            .route(
                "/api/v1/representatives/{citizen_id}/enterprises",
                get(represented_endpoint),
            )
            .route("/health", get(health))
            .with_state(self)
    }

    fn get(&self, tax_code: &str) -> Option<&Enterprise> {
        self.by_tax_code
            .get(tax_code)
            .map(|&i| &self.enterprises[i])
    }

    /// Up to `n` citizens who represent at least one enterprise; deterministic.
    pub fn sample_representatives(&self, n: usize) -> Vec<String> {
        let mut ids: Vec<&String> = self.by_representative.keys().collect();
        ids.sort();
        spread(&ids, n, |id| (*id).clone())
    }

    /// The public registration facts of every enterprise, as CSV (an open dataset of the
    /// demo): tax code, name, legal form, registration date, status, province.
    pub fn public_csv(&self) -> String {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let _ = writer.write_record([
            "tax_code",
            "name",
            "legal_form",
            "registered_on",
            "status",
            "province",
        ]);
        for e in &self.enterprises {
            let status = match e.status {
                EnterpriseStatus::Active => "active",
                EnterpriseStatus::Suspended => "suspended",
                EnterpriseStatus::Dissolved => "dissolved",
            };
            let _ = writer.write_record([
                e.tax_code.as_str(),
                e.name.as_str(),
                e.legal_form.as_str(),
                e.registered_on.as_str(),
                status,
                e.address.province.as_str(),
            ]);
        }
        String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
    }

    /// Whether `citizen_id` represents at least one enterprise.
    pub fn represents(&self, citizen_id: &str) -> bool {
        self.by_representative.contains_key(citizen_id)
    }
}

/// `400 {"error":"invalid_citizen_id"}` unless `citizen_id` is 12 digits.
fn invalid_citizen_id(citizen_id: &str) -> Option<Response> {
    (citizen_id.len() != 12 || !citizen_id.bytes().all(|b| b.is_ascii_digit())).then(|| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": "invalid_citizen_id" })),
        )
            .into_response()
    })
}

async fn represented_endpoint(
    State(register): State<Arc<EnterpriseRegister>>,
    Path(citizen_id): Path<String>,
) -> Response {
    if let Some(refusal) = invalid_citizen_id(&citizen_id) {
        return refusal;
    }
    let enterprises: Vec<serde_json::Value> = register
        .by_representative
        .get(&citizen_id)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|&i| {
            let e = &register.enterprises[i];
            serde_json::json!({
                "tax_code": e.tax_code,
                "name": e.name,
                "legal_form": e.legal_form,
                "status": e.status,
                "registered_on": e.registered_on,
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "citizen_id": citizen_id, "enterprises": enterprises }))
        .into_response()
}

// ---------------------------------------------------------------------------
// The social insurance register (REST/JSON)
// ---------------------------------------------------------------------------

const INSURANCE_SEED: u64 = 0x0da7_a6a7_e000_0003;

/// Hospitals where a health-insurance card can be registered (synthetic list).
const HOSPITALS: [&str; 6] = [
    "Bệnh viện Nhân dân 115",
    "Bệnh viện Chợ Rẫy",
    "Bệnh viện Bạch Mai",
    "Bệnh viện Đa khoa tỉnh",
    "Trung tâm Y tế huyện",
    "Trạm Y tế xã",
];

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct Employer {
    name: String,
    tax_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct HealthInsurance {
    card_number: String,
    valid_until: String,
    registered_hospital: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct Participant {
    citizen_id: String,
    social_insurance_number: String,
    /// `compulsory` (employed), `voluntary`, or `retired` (drawing a pension).
    status: &'static str,
    employer: Option<Employer>,
    /// `YYYY-MM`.
    insured_since: String,
    contribution_months: u32,
    health_insurance: HealthInsurance,
}

/// A synthetic social insurance register (bảo hiểm xã hội) speaking REST/JSON: most adults
/// of [`PopulationRegister::synthetic`] are participants, employed by enterprises of
/// [`EnterpriseRegister::synthetic`], self-insured, or retired.
///
/// Routes (see [`InsuranceRegister::router`]):
/// - `GET /api/v1/participants/{citizen_id}` — `200` with the participant, `404
///   {"error":"not_found"}` for a citizen who is not one, `400 {"error":"invalid_citizen_id"}`.
/// - `GET /health` — `200 ok`.
#[derive(Debug, Clone)]
pub struct InsuranceRegister {
    participants: HashMap<String, Participant>,
}

impl InsuranceRegister {
    /// The deterministic synthetic register (identical on every call).
    pub fn synthetic() -> Self {
        let people = generate_citizens(POPULATION_SEED, CITIZEN_COUNT);
        let enterprises = generate_enterprises(ENTERPRISE_SEED, ENTERPRISE_COUNT, &people);
        let employers: Vec<&Enterprise> = enterprises
            .iter()
            .filter(|e| e.status == EnterpriseStatus::Active)
            .collect();
        let mut rng = SplitMix64(INSURANCE_SEED);
        let mut participants = HashMap::new();
        for person in people.iter().filter(|p| p.birth_year <= 2006) {
            if !rng.chance(80) {
                continue;
            }
            let retired = person.birth_year < 1966;
            let (status, employer) = if retired {
                ("retired", None)
            } else if rng.chance(70) && !employers.is_empty() {
                let e = employers[rng.below(employers.len() as u64) as usize];
                (
                    "compulsory",
                    Some(Employer {
                        name: e.name.clone(),
                        tax_code: Some(e.tax_code.clone()),
                    }),
                )
            } else {
                ("voluntary", None)
            };
            let start_year = (u64::from(person.birth_year) + 18).clamp(1995, 2025);
            let year = rng.range(start_year, 2025);
            let month = rng.range(1, 12);
            let months = ((2026 - year) * 12).saturating_sub(month) as u32;
            let region = &person.citizen_id[1..3];
            let number = format!("{region}{}", rng.digits(8));
            let card_prefix = match status {
                "compulsory" => "DN",
                "retired" => "HT",
                _ => "GD",
            };
            participants.insert(
                person.citizen_id.clone(),
                Participant {
                    citizen_id: person.citizen_id.clone(),
                    social_insurance_number: number.clone(),
                    status,
                    employer,
                    insured_since: format!("{year:04}-{month:02}"),
                    contribution_months: months,
                    health_insurance: HealthInsurance {
                        card_number: format!("{card_prefix}4{region}{number}"),
                        valid_until: "2026-12-31".to_owned(),
                        registered_hospital: (*rng.pick(&HOSPITALS)).to_owned(),
                    },
                },
            );
        }
        InsuranceRegister { participants }
    }

    /// Whether `citizen_id` is a participant.
    pub fn insures(&self, citizen_id: &str) -> bool {
        self.participants.contains_key(citizen_id)
    }

    /// The register's HTTP interface: `GET /api/v1/participants/{citizen_id}` and `GET /health`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(
                "/api/v1/participants/{citizen_id}",
                get(participant_endpoint),
            )
            .route("/health", get(health))
            .with_state(self)
    }
}

async fn participant_endpoint(
    State(register): State<Arc<InsuranceRegister>>,
    Path(citizen_id): Path<String>,
) -> Response {
    if let Some(refusal) = invalid_citizen_id(&citizen_id) {
        return refusal;
    }
    match register.participants.get(&citizen_id) {
        Some(participant) => axum::Json(participant).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": "not_found" })),
        )
            .into_response(),
    }
}

async fn enterprise_endpoint(
    State(register): State<Arc<EnterpriseRegister>>,
    Path(tax_code): Path<String>,
) -> Response {
    if tax_code.len() != 10 || !tax_code.bytes().all(|b| b.is_ascii_digit()) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": "invalid_tax_code" })),
        )
            .into_response();
    }
    match register.get(&tax_code) {
        Some(enterprise) => axum::Json(enterprise).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": "not_found" })),
        )
            .into_response(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.
mod tests {
    use super::*;

    const GET_CITIZEN: &str = "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><m:GetCitizen xmlns:m=\"urn:vn:gov:population:1\"><m:CitizenId>{ID}</m:CitizenId></m:GetCitizen></soap:Body></soap:Envelope>";

    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        format!("http://{addr}")
    }

    async fn soap_call(base: &str, body: String) -> (StatusCode, String, String) {
        let response = reqwest::Client::new()
            .post(format!("{base}/soap"))
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", "\"urn:vn:gov:population:1#GetCitizen\"")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        (status, content_type, response.text().await.unwrap())
    }

    /// Text of every leaf element, keyed by local name, via a real XML parser.
    fn leaf_texts(xml: &str) -> HashMap<String, String> {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut out = HashMap::new();
        let mut current: Option<String> = None;
        let mut text = String::new();
        loop {
            match reader.read_event().unwrap() {
                Event::Start(s) => {
                    current = Some(s.local_name().into_inner().to_owned());
                    text.clear();
                }
                Event::Text(t) => text.push_str(&t.xml10_content()),
                Event::GeneralRef(r) => {
                    let s = match r.resolve_char_ref().unwrap() {
                        Some(c) => c.to_string(),
                        None => quick_xml::escape::resolve_predefined_entity(&r)
                            .unwrap()
                            .to_owned(),
                    };
                    text.push_str(&s);
                }
                Event::End(_) => {
                    if let Some(name) = current.take() {
                        out.insert(name, std::mem::take(&mut text));
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        out
    }

    #[test]
    fn synthetic_data_is_deterministic_and_well_formed() {
        let a = PopulationRegister::synthetic();
        let b = PopulationRegister::synthetic();
        assert_eq!(a.citizens.len(), 500);
        assert_eq!(a.citizens, b.citizens);
        assert_eq!(a.sample_citizen_ids(10), b.sample_citizen_ids(10));
        assert_eq!(a.sample_citizen_ids(10).len(), 10);
        assert_eq!(a.sample_citizen_ids(10_000).len(), 500);
        assert_eq!(a.by_id.len(), 500, "citizen IDs are unique");

        for c in &a.citizens {
            assert_eq!(c.citizen_id.len(), 12);
            assert!(c.citizen_id.bytes().all(|b| b.is_ascii_digit()));
            let year: u16 = c.date_of_birth[..4].parse().unwrap();
            assert!((1940..=2007).contains(&year));
            assert_eq!(&c.citizen_id[4..6], &c.date_of_birth[2..4]);
            let century_sex = c.citizen_id.as_bytes()[3] - b'0';
            assert_eq!(century_sex >= 2, year >= 2000);
            assert_eq!(century_sex % 2 == 1, c.sex == Sex::Female);
            assert!(PROVINCES.iter().any(|p| p.cccd_code == &c.citizen_id[..3]));
            // Every rendered response is well-formed and round-trips.
            let texts = leaf_texts(&render_citizen_response(c));
            assert_eq!(texts["FullName"], c.full_name);
            assert_eq!(texts["Street"], c.address.street);
        }

        let e1 = EnterpriseRegister::synthetic();
        let e2 = EnterpriseRegister::synthetic();
        assert_eq!(e1.enterprises.len(), 300);
        assert_eq!(e1.enterprises, e2.enterprises);
        assert_eq!(e1.sample_tax_codes(7), e2.sample_tax_codes(7));
        assert_eq!(e1.by_tax_code.len(), 300, "tax codes are unique");
        for e in &e1.enterprises {
            assert_eq!(e.tax_code.len(), 10);
            assert!(e.tax_code.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(tax_check_digit(&e.tax_code[..9]), e.tax_code.chars().last());
            let rep = a.get(&e.legal_representative.citizen_id).unwrap();
            assert_eq!(rep.full_name, e.legal_representative.full_name);
        }
    }

    #[test]
    fn xml_escapes_special_characters() {
        let mut c = PopulationRegister::synthetic().citizens[0].clone();
        c.full_name = "Nguyễn <Văn> \"A\" & 'B'".into();
        c.address.street = "Số 1 <script>&amp;".into();
        let xml = render_citizen_response(&c);
        assert!(!xml.contains("<Văn>"));
        assert!(!xml.contains("<script>"));
        assert!(xml.contains("&lt;Văn&gt;"));
        assert!(xml.contains("&amp;amp;"));
        let texts = leaf_texts(&xml);
        assert_eq!(texts["FullName"], c.full_name);
        assert_eq!(texts["Street"], c.address.street);

        let fault = render_fault("soap:Client", "bad <input> & more");
        assert_eq!(leaf_texts(&fault)["faultstring"], "bad <input> & more");
    }

    #[test]
    fn soap_parser_accepts_variants_and_rejects_junk() {
        let id = "001085012345";
        let ok = GET_CITIZEN.replace("{ID}", id);
        assert_eq!(parse_get_citizen(&ok).unwrap(), id);
        // Different prefixes, default namespace, header, whitespace, XML declaration.
        let variant = format!(
            "<?xml version=\"1.0\"?>\n<Envelope xmlns=\"http://schemas.xmlsoap.org/soap/envelope/\">\
             <Header><x:Trace xmlns:x=\"urn:x\">abc</x:Trace></Header>\n  <Body>\
             <GetCitizen xmlns=\"urn:vn:gov:population:1\"><CitizenId> {id} </CitizenId>\
             </GetCitizen></Body></Envelope>"
        );
        assert_eq!(parse_get_citizen(&variant).unwrap(), id);
        let char_ref = GET_CITIZEN.replace("{ID}", "&#48;01085012345");
        assert_eq!(parse_get_citizen(&char_ref).unwrap(), id);

        for bad in [
            "",
            "not xml",
            "<soap:Envelope><soap:Body>",
            "<a/>",
            "<Envelope/>",
            "<Envelope><Body/></Envelope>",
            "<Envelope><Body><GetCitizen/></Body></Envelope>",
            "<Envelope><Body><GetCitizen><CitizenId/></GetCitizen></Body></Envelope>",
            "<Envelope><Body><GetTaxes><CitizenId>001085012345</CitizenId></GetTaxes></Body></Envelope>",
            "<Envelope><Body><GetCitizen><CitizenId>12345</CitizenId></GetCitizen></Body></Envelope>",
            "<Envelope><Body><GetCitizen><CitizenId>001085012345</CitizenId><CitizenId>001085012345</CitizenId></GetCitizen></Body></Envelope>",
            "<Envelope><Body><GetCitizen><CitizenId>001085012345</CitizenId></GetCitizen><GetCitizen/></Body></Envelope>",
            "<Envelope><Body><GetCitizen><CitizenId>001085012345</CitizenId></GetCitizen></Body></Envelope><Envelope/>",
            "<Envelope><Body><GetCitizen><CitizenId>001085012345</CitizenId></GetCitizen></Body></Wrong>",
            "<!DOCTYPE x [<!ENTITY e \"001085012345\">]><Envelope><Body><GetCitizen><CitizenId>&e;</CitizenId></GetCitizen></Body></Envelope>",
            "<Envelope><Body><GetCitizen><CitizenId>&e;</CitizenId></GetCitizen></Body></Envelope>",
        ] {
            assert!(parse_get_citizen(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[tokio::test]
    async fn population_register_over_http() {
        let register = Arc::new(PopulationRegister::synthetic());
        let id = register.sample_citizen_ids(1).remove(0);
        let citizen = register.get(&id).unwrap().clone();
        let base = serve(register.router()).await;

        let health = reqwest::get(format!("{base}/health")).await.unwrap();
        assert_eq!(health.status().as_u16(), 200);
        assert_eq!(health.text().await.unwrap(), "ok");

        // Known citizen.
        let (status, content_type, body) = soap_call(&base, GET_CITIZEN.replace("{ID}", &id)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(content_type, "text/xml; charset=utf-8");
        assert!(body.contains("<pop:GetCitizenResponse xmlns:pop=\"urn:vn:gov:population:1\">"));
        let texts = leaf_texts(&body);
        assert_eq!(texts["CitizenId"], id);
        assert_eq!(texts["FullName"], citizen.full_name);
        assert_eq!(texts["DateOfBirth"], citizen.date_of_birth);
        assert_eq!(texts["Sex"], citizen.sex.code());
        assert_eq!(texts["Province"], citizen.address.province);
        assert_eq!(texts["Nationality"], "VN");
        assert!(texts["HouseholdSize"].parse::<u8>().is_ok());

        // Unknown citizen.
        let (status, _, body) = soap_call(&base, GET_CITIZEN.replace("{ID}", "999999999999")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let texts = leaf_texts(&body);
        assert_eq!(texts["faultcode"], "soap:Client.NotFound");
        assert_eq!(texts["faultstring"], "citizen not found");

        // Malformed request.
        let (status, content_type, body) =
            soap_call(&base, "<soap:Envelope><oops".to_owned()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(content_type, "text/xml; charset=utf-8");
        assert_eq!(leaf_texts(&body)["faultcode"], "soap:Client");

        // Well-formed XML but not GetCitizen.
        let (status, _, body) = soap_call(
            &base,
            GET_CITIZEN
                .replace("GetCitizen", "DeleteCitizen")
                .replace("{ID}", &id),
        )
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(leaf_texts(&body)["faultcode"], "soap:Client");

        // Missing SOAPAction.
        let response = reqwest::Client::new()
            .post(format!("{base}/soap"))
            .header("Content-Type", "text/xml")
            .body(GET_CITIZEN.replace("{ID}", &id))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 500);
        assert_eq!(
            leaf_texts(&response.text().await.unwrap())["faultcode"],
            "soap:Client"
        );

        // Wrong content type.
        let response = reqwest::Client::new()
            .post(format!("{base}/soap"))
            .header("Content-Type", "application/json")
            .header("SOAPAction", "\"\"")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 415);
    }

    #[tokio::test]
    async fn enterprise_register_over_http() {
        let register = Arc::new(EnterpriseRegister::synthetic());
        let code = register.sample_tax_codes(3).remove(1);
        let base = serve(register.clone().router()).await;

        let health = reqwest::get(format!("{base}/health")).await.unwrap();
        assert_eq!(health.status().as_u16(), 200);
        assert_eq!(health.text().await.unwrap(), "ok");

        let response = reqwest::get(format!("{base}/api/v1/enterprises/{code}"))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(json["tax_code"], code.as_str());
        for key in [
            "name",
            "international_name",
            "legal_form",
            "registered_on",
            "status",
        ] {
            assert!(json[key].is_string(), "{key}: {json}");
        }
        assert!(["active", "suspended", "dissolved"].contains(&json["status"].as_str().unwrap()));
        assert_eq!(json["registered_on"].as_str().unwrap().len(), 10);
        for key in ["province", "district", "street"] {
            assert!(json["address"][key].is_string(), "{key}: {json}");
        }
        for key in ["full_name", "citizen_id", "position"] {
            assert!(
                json["legal_representative"][key].is_string(),
                "{key}: {json}"
            );
        }
        assert!(json["charter_capital_vnd"].as_u64().unwrap() >= 100_000_000);
        assert!(!json["industry_codes"].as_array().unwrap().is_empty());
        let expected = serde_json::to_value(register.get(&code).unwrap()).unwrap();
        assert_eq!(json, expected);

        let response = reqwest::get(format!("{base}/api/v1/enterprises/0000000000"))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404);
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(json, serde_json::json!({ "error": "not_found" }));

        let response = reqwest::get(format!("{base}/api/v1/enterprises/abc"))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
    }
}
