pub struct Program; pub struct CompileOptions; pub struct DeviceParams; #[derive(Debug)] pub struct LowerError; pub fn compile() {}
