use shoal_core::Pool;
use shoal_threads::Threads;
use std::time::Instant;

fn main() {
    let pool = Pool::builder().workers(2).build(Threads::new()).unwrap();
    let v = pool.map(0..10u64, |x| x * x).unwrap();
    println!("{v:?}");
    let h = pool.submit(|| 42).unwrap();
    println!("{:?}", h.wait());
    let input: Vec<u64> = (0..1_000_000).collect();
    for _ in 0..5 {
        let t = Instant::now();
        let out = pool.map(input.clone(), |x| x * x).unwrap();
        println!("map 1e6: {:?} {}", t.elapsed(), out.len());
    }
    let t = Instant::now();
    let mut n = 0;
    for _ in 0..10000 {
        n += pool.submit(|| 1).unwrap().wait().unwrap();
    }
    println!("roundtrip: {:?}/task ({n})", t.elapsed() / 10000);
    let c: usize = pool.imap(0..100_000u64, |x| x + 1).map(|r| r.unwrap() as usize).count();
    println!("imap {c}");
    println!("{}", pool.insights());
}
