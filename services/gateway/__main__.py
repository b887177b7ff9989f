from services.gateway.app import GatewayService
from services.gateway.settings import GatewaySettings
from services.runtime.service import main as run


def main() -> None:
    run(GatewaySettings, GatewayService)


if __name__ == "__main__":
    main()
