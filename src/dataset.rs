//! Folders of images as one scoring job: which files are images and in which order, what was
//! skipped and why, references paired with their images, and frames scored on several threads
//! from one loaded model with the results handed back in input order.

use crate::error::{Context, Result};
#[cfg(doc)]
use crate::scorer::Scorer;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File extensions read as images (lower case; matched case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// One image of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    /// The file, as found (the input joined with the path below it).
    pub path: PathBuf,
    /// The path below the folder it was found in; for a file named directly, its file name.
    pub relative: PathBuf,
}

/// A file left out of a job, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file (or folder entry) left out.
    pub path: PathBuf,
    /// Why, in a few words (`not an image file (.txt)`, `hidden file`, ...).
    pub reason: String,
}

/// The images of a job in order, and what was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageList {
    /// Inputs in the order given; below each folder, sorted by path.
    pub images: Vec<ImageFile>,
    /// Files under the folders that are not read, in the order met.
    pub skipped: Vec<Skipped>,
}

impl ImageList {
    /// The skipped files counted by reason, for a one-line summary: `2 not an image file
    /// (.txt), 1 hidden file`; `None` when nothing was skipped.
    pub fn skipped_summary(&self) -> Option<String> {
        summarise_skipped(&self.skipped)
    }
}

/// Skipped files counted by reason (see [`ImageList::skipped_summary`]).
pub fn summarise_skipped(skipped: &[Skipped]) -> Option<String> {
    let mut by_reason = BTreeMap::<&str, usize>::new();
    for s in skipped {
        *by_reason.entry(&s.reason).or_default() += 1;
    }
    (!by_reason.is_empty()).then(|| by_reason.iter().map(|(r, n)| format!("{n} {r}")).collect::<Vec<_>>().join(", "))
}

/// Whether `path` has one of [`IMAGE_EXTENSIONS`].
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The images named by `inputs`: a file is taken as given, and so is a path that cannot be
/// read (opening it tells what is wrong, in its place in the output, and the rest of the job
/// goes on); a folder is walked recursively, symbolic links followed, sorted by path, and
/// only files with an image extension are taken. Hidden files (a leading `.`, such as macOS's
/// `._x.png` companions) and hidden folders are skipped.
pub fn collect(inputs: &[PathBuf]) -> Result<ImageList> {
    let mut list = ImageList::default();
    for input in inputs {
        if std::fs::metadata(input).is_ok_and(|m| m.is_dir()) {
            walk(input, &mut list)?;
        } else {
            let name = input.file_name().map(PathBuf::from).unwrap_or_else(|| input.clone());
            list.images.push(ImageFile { path: input.clone(), relative: name });
        }
    }
    Ok(list)
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| n.starts_with('.') && n != "." && n != "..")
}

fn walk(root: &Path, list: &mut ImageList) -> Result<()> {
    let walker = walkdir::WalkDir::new(root).follow_links(true).sort_by_file_name().into_iter();
    // Hidden folders (`.git`, `.ipynb_checkpoints`) are not entered, and not listed file by file.
    let walker = walker.filter_entry(|e| e.depth() == 0 || !(e.file_type().is_dir() && is_hidden(e.file_name())));
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                // A loop of links or an unreadable folder: the rest of the walk goes on.
                let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| root.to_path_buf());
                let reason = if e.loop_ancestor().is_some() { "link loop".into() } else { "unreadable".into() };
                list.skipped.push(Skipped { path, reason });
                continue;
            }
        };
        if entry.file_type().is_dir() {
            continue;
        }
        let path = entry.path().to_path_buf();
        let reason = if is_hidden(entry.file_name()) {
            Some("hidden file".to_string())
        } else if !entry.file_type().is_file() {
            Some("not a regular file".to_string())
        } else if !is_image_file(&path) {
            Some(match path.extension().and_then(|e| e.to_str()) {
                Some(ext) => format!("not an image file (.{})", ext.to_ascii_lowercase()),
                None => "not an image file (no extension)".to_string(),
            })
        } else {
            None
        };
        match reason {
            Some(reason) => list.skipped.push(Skipped { path, reason }),
            None => {
                let relative = path.strip_prefix(root).map(Path::to_path_buf).unwrap_or_else(|_| path.clone());
                list.images.push(ImageFile { path, relative });
            }
        }
    }
    Ok(())
}

/// References paired with their images: by relative path below the two folders, the
/// extension aside (`a/x.png` pairs with `a/x.jpg`), as image-quality tools pair them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairing {
    /// (reference, image), sorted by the reference's relative path.
    pub pairs: Vec<(ImageFile, ImageFile)>,
    /// References without an image.
    pub only_reference: Vec<ImageFile>,
    /// Images without a reference.
    pub only_image: Vec<ImageFile>,
    /// Files left out: not images, hidden, or ambiguous (two files with one relative path
    /// apart from the extension, e.g. `x.png` and `x.jpg`).
    pub skipped: Vec<Skipped>,
}

impl Pairing {
    /// The skipped files counted by reason (see [`ImageList::skipped_summary`]).
    pub fn skipped_summary(&self) -> Option<String> {
        summarise_skipped(&self.skipped)
    }
}

/// Pairs the images below `reference` with those below `image` (see [`Pairing`]).
pub fn pair(reference: &Path, image: &Path) -> Result<Pairing> {
    let mut pairing = Pairing::default();
    let mut side = |root: &Path| -> Result<BTreeMap<PathBuf, ImageFile>> {
        if !std::fs::metadata(root).with_context(|| format!("reading {}", root.display()))?.is_dir() {
            crate::bail!(InvalidArgument, "{} is not a folder (pairing needs two folders)", root.display());
        }
        let mut list = ImageList::default();
        walk(root, &mut list)?;
        pairing.skipped.append(&mut list.skipped);
        let mut by_key = BTreeMap::<PathBuf, Vec<ImageFile>>::new();
        for f in list.images {
            by_key.entry(f.relative.with_extension("")).or_default().push(f);
        }
        let mut unique = BTreeMap::new();
        for (key, mut files) in by_key {
            if files.len() == 1 {
                unique.insert(key, files.pop().expect("one file"));
            } else {
                let reason = "ambiguous (same name, another extension)".to_string();
                pairing.skipped.extend(files.into_iter().map(|f| Skipped { path: f.path, reason: reason.clone() }));
            }
        }
        Ok(unique)
    };
    let refs = side(reference)?;
    let mut imgs = side(image)?;
    for (key, r) in refs {
        match imgs.remove(&key) {
            Some(i) => pairing.pairs.push((r, i)),
            None => pairing.only_reference.push(r),
        }
    }
    pairing.only_image = imgs.into_values().collect();
    Ok(pairing)
}

/// Runs `work` on every item with one worker per thread (for scoring, scorers from
/// [`Scorer::fork`]: one model loaded, one state each) and hands each result to `sink` on the
/// calling thread, in item order, as soon as it and all before it are done. Items are taken
/// one at a time by whichever thread is free, so a slow item holds back only the output.
/// With one worker, everything runs on the calling thread.
pub fn map_ordered<C, T, R, W, S>(scorers: &mut [C], items: &[T], work: W, mut sink: S)
where
    C: Send,
    T: Sync,
    R: Send,
    W: Fn(&mut C, &T) -> R + Sync,
    S: FnMut(usize, R),
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    if let [only] = scorers {
        for (i, item) in items.iter().enumerate() {
            sink(i, work(only, item));
        }
        return;
    }
    let next = AtomicUsize::new(0);
    let (tx, rx) = crossbeam_channel::unbounded::<(usize, R)>();
    std::thread::scope(|s| {
        for scorer in scorers.iter_mut() {
            let (tx, next, work) = (tx.clone(), &next, &work);
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if tx.send((i, work(scorer, item))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let (mut pending, mut emitted) = (BTreeMap::new(), 0);
        for (i, r) in rx {
            pending.insert(i, r);
            while let Some(r) = pending.remove(&emitted) {
                sink(emitted, r);
                emitted += 1;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    fn rels(v: &[ImageFile]) -> Vec<String> {
        v.iter().map(|f| f.relative.display().to_string()).collect()
    }

    #[test]
    fn a_folder_gives_its_images_recursively_sorted_with_the_rest_counted() {
        let d = tempfile::tempdir().unwrap();
        for f in ["b/2.PNG", "b/1.jpg", "a.tif", "notes.txt", ".DS_Store", "._a.png", "c/README", ".git/x.png"] {
            touch(d.path(), f);
        }
        let list = collect(&[d.path().to_path_buf()]).unwrap();
        assert_eq!(rels(&list.images), ["a.tif", "b/1.jpg", "b/2.PNG"]);
        assert_eq!(
            list.skipped_summary().unwrap(),
            "2 hidden file, 1 not an image file (.txt), 1 not an image file (no extension)"
        );
    }

    #[test]
    fn a_named_path_is_taken_as_given_even_when_missing() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "x.dat");
        let list = collect(&[d.path().join("x.dat"), d.path().join("missing.png")]).unwrap();
        assert_eq!(rels(&list.images), ["x.dat", "missing.png"]);
    }

    #[test]
    fn folders_pair_by_relative_path_apart_from_the_extension() {
        let (r, i) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for f in ["s1/a.png", "s1/b.png", "c.png", "d.png", "d.jpg"] {
            touch(r.path(), f);
        }
        for f in ["s1/a.jpg", "s1/b.png", "e.png", "d.png"] {
            touch(i.path(), f);
        }
        let p = pair(r.path(), i.path()).unwrap();
        let pairs: Vec<(String, String)> =
            p.pairs.iter().map(|(a, b)| (a.relative.display().to_string(), b.relative.display().to_string())).collect();
        assert_eq!(pairs, [("s1/a.png".into(), "s1/a.jpg".into()), ("s1/b.png".into(), "s1/b.png".into())]);
        assert_eq!(rels(&p.only_reference), ["c.png"]);
        // d.png of the images lost its partner to the ambiguity on the reference side.
        assert_eq!(rels(&p.only_image), ["d.png", "e.png"]);
        assert_eq!(p.skipped_summary().unwrap(), "2 ambiguous (same name, another extension)");
        assert!(pair(&r.path().join("c.png"), i.path()).is_err());
    }

    #[test]
    fn results_come_back_in_item_order_whatever_thread_finishes_first() {
        let items: Vec<u64> = (0..200).collect();
        for workers in [1usize, 2, 3] {
            let mut counters = vec![0usize; workers];
            let mut seen = Vec::new();
            map_ordered(
                &mut counters,
                &items,
                |n, &x| {
                    *n += 1;
                    // Uneven work, so threads overtake each other.
                    std::thread::sleep(std::time::Duration::from_micros((x * 7919) % 300));
                    x * x
                },
                |i, r| seen.push((i, r)),
            );
            assert_eq!(seen, items.iter().map(|&x| (x as usize, x * x)).collect::<Vec<_>>());
            assert_eq!(counters.iter().sum::<usize>(), items.len());
        }
    }
}
