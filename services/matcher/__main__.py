from services.matcher.app import MatcherService
from services.matcher.settings import MatcherSettings
from services.runtime.service import main as run


def main() -> None:
    run(MatcherSettings, MatcherService)


if __name__ == "__main__":
    main()
