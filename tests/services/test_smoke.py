from tests.conftest import Starter


async def test_linux_playground_answers_exec(start: Starter) -> None:
    playground = await start("linux")
    assert playground.state == "running"
    code, out, _ = await start.exec(playground, "hostname; systemctl is-system-running --wait")
    assert code == 0, out
    assert out.split() == ["linux", "running"]
