pub fn run(_ctx: &crate::ctx::Ctx, _quick: bool, _runs: usize) -> anyhow::Result<()> {
    anyhow::bail!("bench: not yet")
}
