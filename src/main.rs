fn main() -> std::process::ExitCode {
    mpp_cancel::cli::main()
}
