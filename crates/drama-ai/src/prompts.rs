//! Every prompt the crate sends, in one place, versioned.
//!
//! [`PROMPT_VERSION`] is recorded with each call ([`crate::Generated::prompt_version`]); bump
//! it whenever a word here changes, so that inputs hashed with it are regenerated.
//!
//! The 9:16 instruction lives only in [`image_prompt`] and [`video_prompt`]; the content
//! builders ([`portrait`], [`cover`], [`audition`]) never mention the frame.

use std::fmt::Write as _;

use drama_domain::{Character, Drama, Episode};

use crate::types::ImageKind;
use crate::validate::EpisodeCount;

/// Version of the prompt texts below.
pub const PROMPT_VERSION: &str = "drama-prompts/2026-11-25.1";

/// The visual style every image and clip shares.
pub const STYLE: &str =
    "Anime illustration style: clean lines, vibrant colours, cinematic lighting.";

/// System prompt for writing a drama from a premise.
pub fn drama_system(episodes: EpisodeCount) -> String {
    format!(
        "You write short-form vertical dramas for phone screens: emotional, fast, with a hook in \
every episode.\n\
From the user's premise, write the drama's title, a one-paragraph description, its characters \
and its episode outlines.\n\
Characters: exactly 1 or 2 leads (main: true) and supporting characters (main: false), about \
4 to 6 in total unless the premise says otherwise. Give each a gender of male, female or other, \
a description concrete enough to draw the same face, hair and clothes in every shot (if the \
character is an animal, say which animal), and a detailed voice_description (tone, pitch, pace, \
accent, emotional quality, speaking style) that fits the personality.\n\
Episodes: write {}. Each description tells the whole arc of the episode and its key beats; \
together the episodes make a complete story.\n\
Do not write scenes or media prompts yet; they are written episode by episode later.\n\
Ids are short, lower-case, unique and use only a-z, 0-9 and '-' (char-mara, ep1).",
        episodes.describe()
    )
}

/// User prompt for writing a drama from a premise.
pub fn drama_user(premise: &str, episodes: EpisodeCount, reference_count: usize) -> String {
    let mut out = format!("Premise:\n{premise}\n\nWrite {}.", episodes.describe());
    if reference_count > 0 {
        let _ = write!(
            out,
            " {reference_count} reference image(s) come with the premise; describe the characters \
they show so that they can be drawn from the text alone."
        );
    }
    out
}

/// System prompt for rewriting a drama from feedback.
pub fn improve_system(episodes: EpisodeCount) -> String {
    format!(
        "You are the script editor of a short-form vertical drama. Apply the user's feedback to \
the drama: its structure, character development and episode arcs. Keep the premise and the core \
story; keep each character's id when the character stays. Keep or sharpen the voice descriptions \
unless the feedback asks otherwise; a new character gets a full voice_description. Keep exactly \
1 or 2 main characters. Write {}. Do not write scenes; they come later.",
        episodes.describe()
    )
}

/// The whole drama as a rewrite and a critique show it: title, description and premise, the
/// characters as `character` writes each, then the episodes numbered, as `episode` writes each
/// after its number.
fn drama_brief(
    drama: &Drama,
    character: impl Fn(&mut String, &Character),
    episode: impl Fn(&mut String, &Episode),
) -> String {
    let mut out = format!(
        "Drama: {}\nDescription: {}\nPremise: {}\n\nCharacters:\n",
        drama.title, drama.description, drama.premise
    );
    for c in &drama.characters {
        character(&mut out, c);
    }
    out.push_str("\nEpisodes:\n");
    for (i, e) in drama.episodes.iter().enumerate() {
        let _ = write!(out, "{}. ", i + 1);
        episode(&mut out, e);
    }
    out
}

/// User prompt for rewriting a drama from feedback.
pub fn improve_user(drama: &Drama, feedback: &str) -> String {
    let character = |out: &mut String, c: &Character| {
        let role = if c.main { "Main" } else { "Supporting" };
        let _ = writeln!(
            out,
            "- {}: {} ({role}, {})\n  Description: {}\n  Voice: {}",
            c.id, c.name, c.gender, c.description, c.voice_description
        );
    };
    let mut out = drama_brief(drama, character, |out, e| {
        let _ = writeln!(out, "{} [{}]: {}", e.title, e.id, e.description);
    });
    let _ = write!(out, "\nFeedback:\n{feedback}");
    out
}

/// System prompt for a critique.
pub const CRITIQUE_SYSTEM: &str = "You are a critic of short-form vertical dramas. Give balanced, \
actionable feedback at the level of the whole drama: structure and pacing, character development, \
consistency and motivation, emotional impact, how the episodes flow into each other, and whether \
each voice description is specific and distinct from the others. Name strengths and weaknesses, \
then the three changes that would help most. Plain text, no JSON.";

/// User prompt for a critique.
pub fn critique_user(drama: &Drama) -> String {
    let character = |out: &mut String, c: &Character| {
        let role = if c.main { "main" } else { "supporting" };
        let _ = writeln!(
            out,
            "- {} ({role}, {}): {} Voice: {}",
            c.name, c.gender, c.description, c.voice_description
        );
    };
    drama_brief(drama, character, |out, e| {
        let _ = writeln!(out, "{}: {}", e.title, e.description);
        for s in &e.scenes {
            let _ = writeln!(out, "   - {}", clip(&s.description, 160));
        }
    })
}

/// System prompt for writing one episode's scenes.
pub const SCENES_SYSTEM: &str = "You are the visual director of a short-form vertical drama. \
Break the episode into 3 to 5 cinematic scenes. Each scene has a description (action and \
dialogue), one storyboard (a still frame: composition, framing, lighting, mood, where each \
character stands) listing the ids of the characters it shows (at most 3), and one clip (the \
motion animated from that storyboard: action, dialogue delivery, camera movement) of 10 or 15 \
seconds. Keep costumes, props and places continuous with the earlier episodes. Describe each \
character's look in the storyboard prompt the same way every time. Scene ids are \
<episode id>-s1, <episode id>-s2, …; asset ids are <scene id>-storyboard and <scene id>-clip.";

/// User prompt for writing one episode's scenes.
pub fn scenes_user(drama: &Drama, episode: &Episode) -> String {
    let mut out = format!(
        "Drama: {}\n{}\n\nCharacters (use these ids):\n",
        drama.title, drama.description
    );
    for c in &drama.characters {
        let _ = writeln!(
            out,
            "- {} (id {}): {}",
            c.name,
            c.id,
            clip(&c.description, 200)
        );
    }
    let earlier: Vec<&Episode> = drama
        .episodes
        .iter()
        .take_while(|e| e.id != episode.id)
        .collect();
    if !earlier.is_empty() {
        out.push_str("\nEarlier episodes:\n");
        for (i, e) in earlier.iter().enumerate() {
            let _ = writeln!(
                out,
                "Ep{} '{}': {}",
                i + 1,
                e.title,
                clip(&e.description, 200)
            );
            for s in &e.scenes {
                let _ = writeln!(out, "   - {}: {}", s.id, clip(&s.description, 120));
            }
        }
    }
    let _ = write!(
        out,
        "\nWrite the scenes of this episode (id {}):\n'{}': {}",
        episode.id, episode.title, episode.description
    );
    out
}

/// The follow-up message of the one repair attempt after an invalid answer.
pub fn repair(problems: &[String]) -> String {
    let mut out = String::from(
        "Your answer cannot be used as it is. Fix these problems and answer again with the \
complete JSON (not a diff):\n",
    );
    for p in problems {
        let _ = writeln!(out, "- {p}");
    }
    out
}

/// The follow-up message of the one repair attempt after an answer that was cut off.
pub const REPAIR_TRUNCATED: &str = "Your answer was cut off at the output limit. Answer again \
with the complete JSON, shorter: tighter descriptions and prompts, same structure.";

/// Frames an image request: the 9:16 instruction (the only one), what the references are, the
/// content, and the style.
pub fn image_prompt(kind: ImageKind, content: &str, reference_count: usize) -> String {
    let mut out = String::from(
        "Vertical 9:16 portrait-orientation image (for example 1080x1920), taller than wide. ",
    );
    match kind {
        ImageKind::Portrait => out.push_str("A character portrait. "),
        ImageKind::Storyboard => out.push_str("A storyboard frame of a scene. "),
        ImageKind::Cover => out.push_str("A dramatic poster-style cover. "),
    }
    if reference_count > 0 {
        let _ = write!(
            out,
            "The {reference_count} attached image(s) are reference sheets of the characters in \
this image, in the order they are named: keep their faces, hair, clothes and colours exactly. "
        );
    }
    out.push_str(content.trim());
    out.push(' ');
    out.push_str(STYLE);
    out
}

/// Frames a video request: motion from the reference frame, 9:16 once.
pub fn video_prompt(content: &str, has_reference: bool) -> String {
    let mut out = String::from("Vertical 9:16 video. ");
    if has_reference {
        out.push_str(
            "Animate the attached frame: keep its characters, clothes and setting unchanged. ",
        );
    }
    out.push_str(content.trim());
    out.push(' ');
    out.push_str(STYLE);
    out
}

/// Content of a character's portrait (framed later by [`image_prompt`]).
pub fn portrait(character: &Character) -> String {
    format!(
        "{}: {} Gender: {}. Front half-body view from the waist up, facing the viewer, clear \
facial features, expressive eyes, plain background. If the description names an animal, draw \
that animal, not a human.",
        character.name,
        character.description.trim(),
        character.gender
    )
}

/// Content of a drama's cover (framed later by [`image_prompt`]).
pub fn cover(drama: &Drama) -> String {
    let mains: Vec<String> = drama
        .characters
        .iter()
        .filter(|c| c.main)
        .map(|c| format!("{} ({}): {}", c.name, c.gender, clip(&c.description, 160)))
        .collect();
    format!(
        "Cover for the drama \"{}\" with the title written on it. {} Leads: {}.",
        drama.title,
        drama.description.trim(),
        mains.join(", ")
    )
}

/// Content of a character's audition clip (framed later by [`video_prompt`]).
pub fn audition(character: &Character) -> String {
    format!(
        "Character audition: {}, {} Voice: {}. A dynamic pose, a slight turn towards the camera, \
expressive gestures that show the personality and the way of speaking.",
        character.name,
        character.description.trim(),
        character.voice_description
    )
}

fn clip(text: &str, max: usize) -> String {
    crate::error::shorten(text.trim(), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_is_said_once() {
        let framed = image_prompt(ImageKind::Portrait, "Mara: tall, red scarf.", 2);
        assert_eq!(framed.matches("9:16").count(), 1, "{framed}");
        assert!(framed.contains("Mara: tall, red scarf."));
        assert!(framed.contains("2 attached image(s)"));
        assert_eq!(video_prompt("She runs.", true).matches("9:16").count(), 1);
    }
}
