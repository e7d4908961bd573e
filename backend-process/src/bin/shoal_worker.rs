//! `shoal-worker --library PATH`: a standalone worker executable whose task
//! functions come from a shared library exported with
//! `shoal_process::export_functions!`. A pool uses it with
//! `Process::new().program("shoal-worker").arg("--library").arg(PATH)`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let library = match args.iter().position(|a| a == "--library") {
        Some(i) if i + 1 < args.len() => &args[i + 1],
        _ => {
            eprintln!("usage: shoal-worker --library PATH (started by a shoal pool)");
            std::process::exit(2);
        }
    };
    match shoal_process::library::library_registry(std::path::Path::new(library)) {
        Ok(registry) => shoal_process::worker_main(&registry),
        Err(e) => {
            eprintln!("shoal-worker: {e}");
            std::process::exit(2);
        }
    }
    eprintln!("shoal-worker: this program runs only as a worker started by a shoal pool");
    std::process::exit(2);
}
