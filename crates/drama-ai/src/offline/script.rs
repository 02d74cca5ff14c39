//! Deterministic drama writing from the premise's own words.

use drama_domain::{
    AssetId, Character, CharacterId, Drama, DramaId, Episode, EpisodeId, Scene, SceneId,
};

use crate::validate::{EpisodeCount, requested_count, storyboarded_scene};

/// SplitMix64: small, fast, and stable forever (unlike library RNGs across versions).
pub(crate) struct Rng(u64);

impl Rng {
    /// Seeded from any number of strings and the seed.
    pub fn from_parts(seed: u64, parts: &[&str]) -> Self {
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for part in parts {
            for b in part.bytes().chain(std::iter::once(0xFF)) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01B3);
            }
        }
        Self(h)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        let n64 = u64::try_from(n.max(1)).unwrap_or(u64::MAX);
        usize::try_from(self.next() % n64).unwrap_or(0)
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items.get(self.below(items.len())).copied().unwrap_or("")
    }

    /// A float in 0..1.
    pub fn unit(&mut self) -> f32 {
        // 24 random bits fit a f32 mantissa exactly.
        #[allow(clippy::cast_precision_loss)]
        let v = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        v
    }
}

const STOPWORDS: &[&str] = &[
    "about",
    "after",
    "again",
    "against",
    "along",
    "also",
    "among",
    "and",
    "around",
    "because",
    "been",
    "before",
    "being",
    "between",
    "both",
    "but",
    "called",
    "can",
    "could",
    "does",
    "down",
    "during",
    "each",
    "episode",
    "episodes",
    "every",
    "from",
    "have",
    "having",
    "here",
    "into",
    "just",
    "like",
    "more",
    "most",
    "must",
    "only",
    "other",
    "over",
    "same",
    "should",
    "some",
    "such",
    "than",
    "that",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "under",
    "until",
    "very",
    "what",
    "when",
    "where",
    "which",
    "while",
    "whose",
    "with",
    "within",
    "without",
    "would",
    "your",
    "story",
    "drama",
    "character",
    "characters",
    "short",
    "series",
    "make",
    "write",
    "please",
    "want",
    "where",
    "will",
];

const ANIMALS: &[&str] = &[
    "corgi", "dog", "puppy", "cat", "kitten", "fox", "rabbit", "bunny", "panda", "owl", "dragon",
    "wolf", "bear", "tiger", "lion", "horse", "penguin", "hamster", "raccoon", "otter",
];

/// The premise's notable words, in order of appearance, lower case, without repeats.
pub(crate) fn keywords(premise: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for raw in premise.split(|c: char| !c.is_alphanumeric()) {
        let word = raw.to_lowercase();
        if word.chars().count() < 4 || word.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if STOPWORDS.contains(&word.as_str()) || out.contains(&word) {
            continue;
        }
        out.push(word);
    }
    out
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// A character count the premise asks for ("1 character", "three characters").
fn requested_character_count(premise: &str) -> Option<usize> {
    requested_count(premise, "character", |n| (1..=8).contains(&n).then_some(n))
}

const FEMALE: &[&str] = &[
    "Mara", "Lena", "Iris", "Nadia", "Yuki", "Sofia", "Priya", "Elena", "Hana", "Zoe", "Amara",
    "Clara", "Mei", "Ines", "Talia",
];
const MALE: &[&str] = &[
    "Leo", "Kai", "Marcus", "Ravi", "Tomas", "Jonah", "Felix", "Hiro", "Omar", "Daniel", "Arlo",
    "Mateo", "Theo", "Idris", "Sami",
];
const OTHER: &[&str] = &[
    "Rowan", "Sky", "Ash", "Quinn", "Nova", "Sage", "River", "Wren",
];
const FAMILY: &[&str] = &[
    "Vale",
    "Okafor",
    "Tanaka",
    "Reyes",
    "Lindqvist",
    "Moreau",
    "Castell",
    "Hart",
    "Novak",
    "Sato",
    "Black",
    "Quill",
    "Ferrand",
    "Adeyemi",
];
const HAIR: &[&str] = &[
    "short black",
    "long auburn",
    "silver-streaked",
    "curly dark",
    "cropped blond",
    "wavy chestnut",
    "sleek blue-black",
    "tousled copper",
];
const CLOTHES: &[&str] = &[
    "a red wool coat",
    "a worn leather jacket",
    "a crisp white shirt and grey vest",
    "a yellow raincoat",
    "a navy suit with a silver pin",
    "a green hoodie",
    "a long black dress",
    "a denim jacket covered in patches",
];
const TRAITS: &[&str] = &[
    "stubborn and warm-hearted",
    "quiet, watchful and clever",
    "charming but hiding a secret",
    "fearless to the point of recklessness",
    "kind, anxious and fiercely loyal",
    "cold on the surface, soft underneath",
    "funny, restless and impulsive",
];
const SUPPORT_ROLES: &[&str] = &[
    "rival",
    "mentor",
    "best friend",
    "mysterious stranger",
    "younger sibling",
    "ex-partner",
    "boss",
];
const PITCH: &[&str] = &[
    "low",
    "warm mid-range",
    "bright high",
    "husky low",
    "clear mid",
];
const PACE: &[&str] = &["measured", "quick", "unhurried", "clipped", "lilting"];
const TONE: &[&str] = &[
    "velvety", "crisp", "gravelly", "soft", "resonant", "breathy",
];
const ACCENT: &[&str] = &[
    "neutral American",
    "soft British",
    "light Irish",
    "Australian",
    "Spanish-tinged",
    "Japanese-tinged",
    "West African",
];
const STYLE: &[&str] = &[
    "dry wit and short sentences",
    "long thoughtful pauses",
    "playful teasing",
    "formal, precise wording",
    "bursts of nervous laughter",
    "whispered intensity",
];

fn gender_names(gender: &str) -> &'static [&'static str] {
    match gender {
        "female" => FEMALE,
        "male" => MALE,
        _ => OTHER,
    }
}

/// Writes the drama for `premise`.
pub(crate) fn drama(
    seed: u64,
    drama_id: &DramaId,
    premise: &str,
    episodes: EpisodeCount,
) -> Result<Drama, String> {
    let mut rng = Rng::from_parts(seed, &["drama", premise]);
    let words = keywords(premise);
    let word = |i: usize| -> String {
        words
            .get(i % words.len().max(1))
            .cloned()
            .unwrap_or_else(|| "secret".to_owned())
    };
    let lower = premise.to_lowercase();
    let animal = ANIMALS
        .iter()
        .find(|a| {
            lower
                .split(|c: char| !c.is_alphanumeric())
                .any(|w| w == **a || w == format!("{a}s"))
        })
        .copied();

    let total = requested_character_count(premise).unwrap_or(3 + rng.below(3));
    let mains = if total == 1 { 1 } else { 1 + rng.below(2) };
    let mut characters: Vec<Character> = Vec::new();
    let mut used_names: Vec<String> = Vec::new();
    for i in 0..total {
        let main = i < mains;
        let gender = if animal.is_some() && i == 0 {
            ["female", "male"][rng.below(2)]
        } else {
            ["female", "male", "female", "male", "other"][rng.below(5)]
        };
        let mut first = rng.pick(gender_names(gender)).to_owned();
        while used_names.contains(&first) {
            first = rng.pick(gender_names(gender)).to_owned();
            if used_names.len() >= gender_names(gender).len() {
                first = format!("{first}{}", i + 1);
            }
        }
        used_names.push(first.clone());
        let name = if animal.is_some() && i == 0 {
            first.clone()
        } else {
            format!("{first} {}", rng.pick(FAMILY))
        };
        let role = if main {
            if i == 0 { "lead" } else { "co-lead" }
        } else {
            rng.pick(SUPPORT_ROLES)
        };
        let look = match animal {
            Some(kind) if i == 0 => format!(
                "a {kind} with bright eyes and {}",
                rng.pick(CLOTHES).replacen("a ", "a tiny ", 1)
            ),
            _ => format!(
                "{} years old, {} hair, wearing {}",
                19 + rng.below(40),
                rng.pick(HAIR),
                rng.pick(CLOTHES)
            ),
        };
        let description = format!(
            "The {role} of the story: {look}; {}. Bound up with the {} from the first scene.",
            rng.pick(TRAITS),
            word(i)
        );
        let voice = format!(
            "{} pitch, {} pace, {} tone with a {} accent; {} when cornered; speaks with {}.",
            capitalise(rng.pick(PITCH)),
            rng.pick(PACE),
            rng.pick(TONE),
            rng.pick(ACCENT),
            ["trembles", "goes cold and quiet", "gets louder", "jokes"][rng.below(4)],
            rng.pick(STYLE)
        );
        let slug: String = first
            .to_lowercase()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let id = CharacterId::parse(format!("char-{slug}")).map_err(|e| e.to_string())?;
        characters.push(Character {
            id,
            name,
            description,
            gender: gender.to_owned(),
            voice_description: voice,
            main,
            url: None,
            premise_url: None,
            assets: Vec::new(),
            metadata: None,
        });
    }

    let count = match episodes {
        EpisodeCount::Exactly(n) => usize::try_from(n).unwrap_or(1),
        EpisodeCount::Between(a, b) => {
            let span = usize::try_from(b.saturating_sub(a)).unwrap_or(0) + 1;
            usize::try_from(a).unwrap_or(2) + rng.below(span)
        }
    };
    let lead = characters.first().map_or("the lead", |c| c.name.as_str());
    let second = characters
        .get(1)
        .map_or("an old friend", |c| c.name.as_str());
    let episode_list = (0..count)
        .map(|i| -> Result<Episode, String> {
            let n = i + 1;
            let key = capitalise(&word(i + 1));
            let (title, beat) = if n == 1 {
                (
                    format!("The {key}"),
                    format!("{lead}'s ordinary day breaks open when the {} appears; {second} sees it too, and nothing can be unseen.", word(i)),
                )
            } else if n == count {
                (
                    format!("Reckoning of the {key}"),
                    format!("Everything comes due: {lead} stakes it all on the {} and chooses who to save; the last shot answers the first.", word(i)),
                )
            } else {
                (
                    format!("{key} Rising"),
                    format!("The stakes climb: a betrayal around the {} forces {lead} and {second} apart, and a secret surfaces at the worst moment.", word(i)),
                )
            };
            Ok(Episode {
                id: EpisodeId::parse(format!("ep{n}")).map_err(|e| e.to_string())?,
                title,
                description: format!("Episode {n} of {count}. {beat}"),
                premise: None,
                url: None,
                scenes: Vec::new(),
                assets: Vec::new(),
                metadata: None,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let title = match rng.below(3) {
        0 => format!("The {} {}", capitalise(&word(0)), capitalise(&word(1))),
        1 => format!(
            "{} and the {}",
            lead.split(' ').next().unwrap_or(lead),
            capitalise(&word(0))
        ),
        _ => format!("Secrets of the {}", capitalise(&word(0))),
    };
    let drama = Drama {
        id: drama_id.clone(),
        title,
        description: format!(
            "{} - told in {count} vertical episode{}. {}",
            premise.trim(),
            if count == 1 { "" } else { "s" },
            format_args!("{lead} must face the {} before it is too late.", word(0))
        ),
        premise: premise.to_owned(),
        url: None,
        characters,
        episodes: episode_list,
        assets: Vec::new(),
        metadata: None,
    };
    drama.validate().map_err(|e| e.to_string())?;
    Ok(drama)
}

/// Applies feedback: notes it on the drama and episodes, honours an episode count in it.
pub(crate) fn improve(
    seed: u64,
    drama: &Drama,
    feedback: &str,
    new_id: &DramaId,
    episodes: EpisodeCount,
) -> Result<Drama, String> {
    let mut out = drama.clone();
    out.id = new_id.clone();
    out.url = None;
    out.assets.clear();
    out.metadata = None;
    let note = crate::error::shorten(feedback.trim(), 200);
    out.description = format!("{} Revised: {note}", drama.description);
    for c in &mut out.characters {
        c.url = None;
        c.assets.clear();
    }
    if let EpisodeCount::Exactly(n) = episodes {
        let n = usize::try_from(n).unwrap_or(1);
        if out.episodes.len() > n {
            out.episodes.truncate(n);
        } else if out.episodes.len() < n {
            let extra = self::drama(
                seed,
                new_id,
                &drama.premise,
                EpisodeCount::Exactly(u32::try_from(n).unwrap_or(1)),
            )?;
            let have = out.episodes.len();
            out.episodes.extend(extra.episodes.into_iter().skip(have));
        }
    }
    for e in &mut out.episodes {
        e.scenes.clear();
        e.url = None;
        e.assets.clear();
        e.description = format!("{} Revised to address: {note}", e.description);
    }
    out.validate().map_err(|e| e.to_string())?;
    Ok(out)
}

/// A plain-text critique from the drama's shape.
pub(crate) fn critique(drama: &Drama) -> String {
    let mains: Vec<&str> = drama
        .characters
        .iter()
        .filter(|c| c.main)
        .map(|c| c.name.as_str())
        .collect();
    let mut voices: Vec<&str> = drama
        .characters
        .iter()
        .map(|c| c.voice_description.as_str())
        .collect();
    voices.sort_unstable();
    voices.dedup();
    let scenes: usize = drama.episodes.iter().map(|e| e.scenes.len()).sum();
    let mut out = format!(
        "\"{}\" has {} characters ({} main: {}) across {} episodes and {} written scenes.\n\n",
        drama.title,
        drama.characters.len(),
        mains.len(),
        mains.join(" and "),
        drama.episodes.len(),
        scenes
    );
    out.push_str("Strengths: the premise gives a clear hook, and the leads have concrete looks that will stay consistent on screen.\n");
    if voices.len() < drama.characters.len() {
        out.push_str(
            "Weakness: some characters share a voice description; make each voice distinct.\n",
        );
    } else {
        out.push_str("Voices: every character has a distinct voice description.\n");
    }
    if drama.episodes.len() < 3 {
        out.push_str("Pacing: with so few episodes, the middle turn must land fast; put the betrayal in the first half.\n");
    } else {
        out.push_str("Pacing: give the middle episodes a cliffhanger each so viewers swipe on.\n");
    }
    out.push_str("Top changes: sharpen the lead's want in episode 1, pay off the opening image in the finale, and give the supporting cast one memorable line each.");
    out
}

/// Scenes for one episode: storyboard + clip each, ids unique within the drama.
pub(crate) fn scenes(seed: u64, drama: &Drama, episode: &Episode) -> Result<Vec<Scene>, String> {
    let mut rng = Rng::from_parts(
        seed,
        &[
            "scenes",
            drama.id.as_str(),
            episode.id.as_str(),
            &episode.description,
        ],
    );
    let taken: std::collections::HashSet<String> = drama
        .episodes
        .iter()
        .filter(|e| e.id != episode.id)
        .flat_map(|e| {
            e.scenes.iter().map(|s| s.id.as_str().to_owned()).chain(
                e.scenes
                    .iter()
                    .flat_map(|s| s.assets.iter().map(|a| a.id.as_str().to_owned())),
            )
        })
        .chain(
            drama
                .assets_with_owner()
                .filter(|(o, _)| !matches!(o, drama_domain::AssetOwner::Scene { .. }))
                .map(|(_, a)| a.id.as_str().to_owned()),
        )
        .collect();
    let unique = |base: String| -> String {
        let mut candidate = base.clone();
        let mut n = 2;
        while taken.contains(&candidate) {
            candidate = format!("{base}-{n}");
            n += 1;
        }
        candidate
    };
    let mains: Vec<&Character> = drama.characters.iter().filter(|c| c.main).collect();
    let support: Vec<&Character> = drama.characters.iter().filter(|c| !c.main).collect();
    let names: Vec<String> = drama
        .characters
        .iter()
        .flat_map(|c| {
            c.name
                .split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .collect();
    let words: Vec<String> = keywords(&episode.description)
        .into_iter()
        .filter(|w| !names.iter().any(|n| w.starts_with(n.as_str())))
        .collect();
    let count = 3 + rng.below(2);
    let shots = [
        "wide establishing shot",
        "tense close-up",
        "over-the-shoulder two-shot",
        "low-angle hero shot",
        "rain-streaked window reflection",
    ];
    let moves = [
        "slow push-in",
        "handheld follow",
        "whip pan",
        "crane up and away",
        "static frame, then a sudden cut",
    ];
    let mut out = Vec::new();
    for i in 0..count {
        let scene_id = unique(format!("{}-s{}", episode.id, i + 1));
        let mut cast: Vec<&Character> = mains.clone();
        if let Some(extra) = support.get((i + rng.below(3)) % support.len().max(1)) {
            cast.push(extra);
        }
        cast.truncate(drama_domain::STORYBOARD_MAX_CHARACTERS);
        let names: Vec<&str> = cast.iter().map(|c| c.name.as_str()).collect();
        let word = words
            .get(i % words.len().max(1))
            .map_or("moment", String::as_str);
        let description = format!(
            "{} confront{} the {word}. \"We can't go back now,\" {} says, and the room goes silent.",
            names.join(" and "),
            if names.len() == 1 { "s" } else { "" },
            names.first().copied().unwrap_or("someone")
        );
        let looks: Vec<String> = cast
            .iter()
            .map(|c| format!("{} ({})", c.name, crate::error::shorten(&c.description, 90)))
            .collect();
        let board_id =
            AssetId::parse(unique(format!("{scene_id}-storyboard"))).map_err(|e| e.to_string())?;
        let clip_id =
            AssetId::parse(unique(format!("{scene_id}-clip"))).map_err(|e| e.to_string())?;
        let duration = if rng.below(2) == 0 { 10 } else { 15 };
        let board_prompt = format!(
            "{}: {} around the {word}; {}.",
            shots[rng.below(shots.len())],
            names.join(", "),
            looks.join("; ")
        );
        let clip_prompt = format!(
            "{}; {} react as the {word} changes everything.",
            moves[rng.below(moves.len())],
            names.join(" and ")
        );
        out.push(storyboarded_scene(
            SceneId::parse(scene_id).map_err(|e| e.to_string())?,
            description,
            cast.iter().map(|c| c.id.as_str().to_owned()).collect(),
            (board_id, board_prompt),
            (clip_id, clip_prompt),
            Some(duration),
        ));
    }
    Ok(out)
}
