//! Parses the query given as the first argument (or on stdin) and prints the tree, or the error
//! the way the CLI shows it: `cargo run -p loupe-hql-syntax --example parse -- 'requests | take 5'`.

use std::io::Read;

fn main() {
    let src = match std::env::args().nth(1) {
        Some(q) => q,
        None => {
            let mut s = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut s) {
                eprintln!("reading stdin: {e}");
                std::process::exit(2);
            }
            s
        }
    };
    match loupe_hql_syntax::parse(&src) {
        Ok(q) => {
            print!("{}", loupe_hql_syntax::pretty::dump(&q, true));
            println!("--\n{}", loupe_hql_syntax::pretty::to_hql(&q));
        }
        Err(e) => {
            print!("{}", e.render(&src));
            std::process::exit(1);
        }
    }
}
