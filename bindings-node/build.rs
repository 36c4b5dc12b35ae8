//! Sets the linker flags a Node addon needs (symbols resolve in the host).
fn main() {
    napi_build::setup();
}
