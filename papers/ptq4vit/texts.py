"""The fixed text sets of the MiniLM evaluation (written for this package; no download).

``TEST_PAIRS``: 24 pairs of sentences that say the same thing in other words (48 test sentences, the pairs side
by side in ``TEST_TEXTS``). Metrics: the cosine of the quantized encoder's sentence embedding to the float one's,
and the retrieval agreement (each sentence's nearest other sentence is the same under both models).
``CALIBRATION``: 32 other sentences on other topics (the paper calibrates on 32 images), the only text the
search sees.
"""

TEST_PAIRS: tuple[tuple[str, str], ...] = (
    ("The ferry to the island runs twice a day.", "Boats cross to the island two times daily."),
    ("My grandmother grows tomatoes on her balcony.", "Grandma raises tomato plants outside her flat."),
    ("The concert was cancelled because of the storm.", "Bad weather forced the organisers to call off the show."),
    ("He repaired the broken chair with glue and nails.", "Using nails and adhesive, he fixed the damaged seat."),
    ("The lake is too cold for swimming in April.", "In spring the water of the lake is still icy."),
    ("Our flight was delayed by three hours.", "The plane left three hours later than planned."),
    ("She learned Japanese before moving to Osaka.", "Before relocating to Osaka she studied Japanese."),
    ("The shop offers a discount on winter coats.", "Winter jackets are on sale at the store."),
    ("A thick fog covered the harbour this morning.", "Early today the port disappeared in mist."),
    ("The students handed in their essays on time.", "The class submitted the papers by the deadline."),
    ("Drinking enough water helps you stay focused.", "Staying hydrated keeps your mind sharp."),
    ("The old castle is now a youth hostel.", "Travellers can sleep in the former fortress."),
    ("Prices for apartments in the city keep rising.", "Urban flats are getting more expensive every year."),
    ("The dog barked at the mail carrier.", "Our puppy growled when the postman came."),
    ("He missed the bus and walked to school.", "After the bus left without him, he went on foot."),
    ("The engineers replaced the old water pipes.", "New plumbing was installed by the technicians."),
    ("The painting sold for a record price at auction.", "The artwork fetched more money than any before it."),
    ("Cats often sleep for most of the day.", "A house cat naps many hours daily."),
    ("The recipe needs butter, sugar and three eggs.", "You will need eggs, sugar and butter for this dish."),
    ("The hikers got lost when the trail ended.", "Walkers lost their way where the path stopped."),
    ("This phone charges fully in under an hour.", "The handset's battery refills in less than sixty minutes."),
    ("The factory will close at the end of the year.", "Production at the plant stops in December."),
    ("Children love feeding the ducks in the park.", "Kids enjoy giving bread to the park's ducks."),
    ("The judge postponed the trial until next month.", "The court hearing was delayed by a few weeks."),
)

TEST_TEXTS: tuple[str, ...] = tuple(s for pair in TEST_PAIRS for s in pair)

CALIBRATION: tuple[str, ...] = (
    "The central bank kept interest rates unchanged.",
    "A new species of frog was found in the rainforest.",
    "The orchestra tuned their instruments before the show.",
    "Volunteers cleaned plastic from the beach on Sunday.",
    "The compiler reported an error on line forty.",
    "Strong winds knocked down several trees overnight.",
    "The museum opened an exhibition about ancient Egypt.",
    "She ran the marathon in under four hours.",
    "The government announced a plan to build more schools.",
    "Fresh snow made the mountain roads dangerous.",
    "The chef prepared a soup with lentils and carrots.",
    "Astronauts repaired a panel on the space station.",
    "The library lends laptops to students for free.",
    "Traffic lights on the main street were out of order.",
    "A small earthquake shook the coastal town.",
    "The band released its first album in ten years.",
    "Scientists measured the temperature of the deep ocean.",
    "The farmer sold apples and pears at the market.",
    "Our internet connection was slow all afternoon.",
    "The detective questioned the witness for hours.",
    "Wildfires spread quickly through the dry forest.",
    "The toddler built a tower out of wooden blocks.",
    "Investors reacted nervously to the company's report.",
    "The tram line will be extended to the airport.",
    "He wrote a letter to the editor of the newspaper.",
    "The hospital installed a new scanner for patients.",
    "Tourists photographed the sunset from the bridge.",
    "The software team fixed a bug in the login page.",
    "A rare comet will be visible next week.",
    "The choir sang traditional songs at the festival.",
    "Rain is expected to continue through the weekend.",
    "The bakery started selling gluten-free bread.",
)
