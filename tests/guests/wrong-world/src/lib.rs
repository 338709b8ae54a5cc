//! A valid component of some other world, for the host's "wrong world" test.

wit_bindgen::generate!({
    inline: r#"
        package test:other;
        world greeter {
            export greet: func(name: string) -> string;
        }
    "#,
});

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        format!("hello {name}")
    }
}

export!(Greeter);
