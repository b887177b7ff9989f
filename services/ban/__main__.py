from services.ban.app import BanService
from services.ban.settings import BanSettings
from services.runtime.service import main as run


def main() -> None:
    run(BanSettings, BanService)


if __name__ == "__main__":
    main()
