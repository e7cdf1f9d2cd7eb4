//! A component of a world that is not the route plugin's: a well-formed
//! component the host must reject as "not a route plugin".

wit_bindgen::generate!({
    inline: r#"
        package test:other-world;

        world greeter {
            export greet: func(name: string) -> string;
        }
    "#,
    world: "greeter",
});

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        format!("hello, {name}")
    }
}

export!(Greeter);
