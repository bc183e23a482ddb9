//! Route matching and clean-path normalization allocate nothing: checked with a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Method;
use postern::routing::{Match, RouteTable, normalize_path};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn matching_a_request_does_not_allocate() {
    let settings = postern::config::parse(postern::config::DEFAULT_CONFIG, &|_| None).unwrap();
    let table = RouteTable::new(&settings.routes);
    let requests = [
        (
            Some("app.example.com:8080"),
            "/public/site.css",
            Method::GET,
        ),
        (None, "/admin/users", Method::POST),
        (Some("x.example.com"), "/dashboard", Method::GET),
        (None, "/_postern/login", Method::GET),
    ];
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let mut found = 0;
    for (host, path, method) in &requests {
        let path = normalize_path(path).unwrap();
        if let Match::Found(route) = table.find(*host, &path, method) {
            found += route.index + 1;
        }
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert!(found > 0);
    assert_eq!(after - before, 0, "route matching allocated");
}
