"""LED renderer: a room's state as one colour, an effect and a brightness.

Defaults (``DEFAULT_LED_COLOURS`` / ``DEFAULT_LED_EFFECTS`` in :mod:`display.config`). Colour is
never the only cue, so a colour-blind reader (about 1 man in 12) tells every state apart too:
the *level* says whether the room is taken now (free rooms glow at ``brightness``, taken ones
at 40 % of it), the *motion* says whether that changes within minutes (pulse), and only stale
data blinks. Taken is the dim one because red is: to a protanope (about 1 man in 100) red light
looks a quarter as bright as green, so a dim green and a full red would look alike, while a full
green and a 40 % red differ about ninefold (deuteranopes: threefold; the tests measure it).

=========  ===============================  ===================  =========  ======================
state      colour                           effect               level      reads as
=========  ===============================  ===================  =========  ======================
free       green ``#00c000``                steady               full       come in
soon       amber ``#ffa000``                pulse (breathing)    full       free now, a meeting is
                                                                            about to start
busy       red ``#ff0000``                  steady               dim (40%)  in use, do not disturb
ending     magenta ``#ff00c0``              pulse (breathing)    dim (40%)  in use, about to be
                                                                            free
stale      the state's colour               blink (slow on/off,  the        the node cannot vouch
           (``colours.stale`` overrides)    about 1 Hz)          state's    for its data
closed     off (``[node] closed_led`` or    steady               full       quiet hours: outside
           ``colours.closed``: a colour)                                    the opening hours
=========  ===============================  ===================  =========  ======================

Steady, pulse and blink are the three effects every board shows (the panel protocol's SET_LED
effects 0-2, WLED's Solid, Breathe and Blink), so no firmware change is needed for them; the level
is SET_LED's ``brightness`` (WLED's ``bri``). ``led_palette = "colourblind"`` swaps the colours
for Okabe and Ito's blue, yellow, vermillion and reddish purple.

During a booking's check-in window (:mod:`display.checkin`) the light shows the *soon* colour
breathing (amber by default, and whatever a palette gives *soon*): the room is booked and waits
for its people to press the button; once released it is simply free (green).

Per device, ``colours.<state>`` (``"#rrggbb"``, also ``colours.stale`` and ``colours.closed``),
``effects.<state>`` (``steady`` | ``blink`` | ``pulse``, also ``effects.stale``) and
``brightness`` (0-255, the full level) override the defaults.
"""

from __future__ import annotations

from display.config import DEFAULT_LED_COLOURS, DEFAULT_LED_EFFECTS, DeviceConfig
from display.model import CheckinState, RoomView
from display.outputs import RGB, Effect, LedOutput, parse_hex

#: Taken rooms (busy, ending) glow at this share of the device's brightness: the level tells a
#: free room from a taken one without its colour.
TAKEN_LEVEL = 0.4
OFF = LedOutput(colour=(0, 0, 0), effect=Effect.STEADY, brightness=0)


def level(brightness: int, occupied: bool) -> int:
    """The brightness a state is shown at: full while free, :data:`TAKEN_LEVEL` of it while
    taken (at least 1, so a dim light is never off)."""
    if not occupied or brightness == 0:
        return brightness
    return max(1, round(brightness * TAKEN_LEVEL))


def led_output(view: RoomView, device: DeviceConfig) -> LedOutput:
    """What the LED of ``device`` shows for ``view``: pure, no I/O.

    In quiet hours (``view.closed``) the light is off, or steady ``colours["closed"]``. Else the
    colour is ``device.colours[state]``; when ``view.stale``, ``colours["stale"]`` if configured,
    else the state's colour, with ``effects["stale"]`` (default slow blink). A device built
    without colours or effects (not through the config loader) gets the defaults.
    """
    if view.closed:
        closed = device.colours.get("closed")
        return OFF if closed is None else LedOutput(closed, Effect.STEADY, device.brightness)
    state = view.occupancy.state
    colour: RGB = device.colours.get(state.value) or parse_hex(DEFAULT_LED_COLOURS[state.value])
    if view.stale:
        colour = device.colours.get("stale", colour)
        key = "stale"
    elif view.checkin is not None and view.checkin.state is CheckinState.WAITING:
        colour = device.colours.get("soon") or parse_hex(DEFAULT_LED_COLOURS["soon"])
        return LedOutput(colour=colour, effect=Effect.PULSE, brightness=device.brightness)
    else:
        key = state.value
    effect = device.effects.get(key) or Effect(DEFAULT_LED_EFFECTS[key])
    return LedOutput(colour=colour, effect=effect,
                     brightness=level(device.brightness, state.occupied))
