"""LED renderer: a room's state as one colour, an effect and a brightness.

Defaults (``DEFAULT_LED_COLOURS`` / ``DEFAULT_LED_EFFECTS`` in :mod:`display.config`), chosen so
that each state is told apart at a glance, by colour first and by motion second:

=========  ===============================  =====================  ==============================
state      colour                           effect                 reads as
=========  ===============================  =====================  ==============================
free       green ``#00c000``                steady                 come in
soon       amber ``#ffa000``                pulse (breathing)      free now, a meeting is about
                                                                   to start
busy       red ``#ff0000``                  steady                 in use, do not disturb
ending     magenta ``#ff00c0``              pulse (breathing)      in use, about to be free
stale      the state's colour               blink (slow on/off,    the node cannot vouch for its
           (``colours.stale`` overrides)    about 1 Hz)            data; colour is the last known
=========  ===============================  =====================  ==============================

Free and busy are the colours every room sign uses; soon and ending are the two in-between states
and therefore move (pulse). Stale never looks like any fresh state: no fresh state blinks, so a
blinking light always means "do not trust me", while its colour still says what the schedule last
said (README: the LED shows stale as the state colour blinking slowly, configurable).

During a booking's check-in window (:mod:`display.checkin`) the light shows the *soon* colour
breathing (amber by default, and whatever a palette gives *soon*): the room is booked and waits
for its people to press the button; once released it is simply free (green).

Per device, ``colours.<state>`` (``"#rrggbb"``, also ``colours.stale``), ``effects.<state>``
(``steady`` | ``blink`` | ``pulse``, also ``effects.stale``) and ``brightness`` (0-255) override
the defaults.
"""

from __future__ import annotations

from display.config import DEFAULT_LED_COLOURS, DEFAULT_LED_EFFECTS, DeviceConfig
from display.model import CheckinState, RoomView
from display.outputs import RGB, Effect, LedOutput, parse_hex


def led_output(view: RoomView, device: DeviceConfig) -> LedOutput:
    """What the LED of ``device`` shows for ``view``: pure, no I/O.

    The colour is ``device.colours[state]``; when ``view.stale``, ``colours["stale"]`` if
    configured, else the state's colour, with ``effects["stale"]`` (default slow blink). A device
    built without colours or effects (not through the config loader) gets the defaults.
    """
    state = view.occupancy.state.value
    colour: RGB = device.colours.get(state) or parse_hex(DEFAULT_LED_COLOURS[state])
    if view.stale:
        colour = device.colours.get("stale", colour)
        key = "stale"
    elif view.checkin is not None and view.checkin.state is CheckinState.WAITING:
        colour = device.colours.get("soon") or parse_hex(DEFAULT_LED_COLOURS["soon"])
        return LedOutput(colour=colour, effect=Effect.PULSE, brightness=device.brightness)
    else:
        key = state
    effect = device.effects.get(key) or Effect(DEFAULT_LED_EFFECTS[key])
    return LedOutput(colour=colour, effect=effect, brightness=device.brightness)
