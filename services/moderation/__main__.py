from services.moderation.app import ModerationService
from services.moderation.settings import ModerationSettings
from services.runtime.service import main as run


def main() -> None:
    run(ModerationSettings, ModerationService)


if __name__ == "__main__":
    main()
