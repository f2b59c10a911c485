// Text helpers shared by the local analyzers: a Unicode word tokenizer and stop-word lists for a
// handful of languages (the language detector's profiles, and the keywords analyzer's filter).

const URL_RE = /\b(?:https?:\/\/|www\.)\S+/giu;
const MENTION_RE = /(^|\s)[@#][\p{L}\p{N}_]+/gu;
const WORD_RE = /[\p{L}\p{N}]+(?:['’][\p{L}]+)*/gu;

/** Lower-cased words: letters and digits, with inner apostrophes kept ("don't", "l'été" → "l'été"). */
export function words(text: string | null | undefined): string[] {
  if (!text) return [];
  const cleaned = text.replace(URL_RE, ' ').replace(MENTION_RE, ' ').toLowerCase();
  return cleaned.match(WORD_RE) ?? [];
}

/** Function words of each language: the most frequent, short and content-free. */
export const STOP_WORDS: Record<string, readonly string[]> = {
  en: `a about above after again all also am an and any are as at be because been before being below between both but by
    can could did do does doing don't down during each few for from further had has have having he her here hers him his
    how i i'm if in into is isn't it it's its itself just me more most my no nor not now of off on once only or other our
    ours out over own same she should so some such than that that's the their theirs them then there these they this those
    through to too under until up very was we were what when where which while who whom why will with would you you're your
    yours yourself`.split(/\s+/),
  de: `aber alle allem als also am an andere auch auf aus bei bin bis bist da dann das dass dein deine dem den denn der des
    dich die dies diese dir doch dort du durch ein eine einem einen einer es etwas für gegen habe haben hat hatte ich ihr
    ihre im in ist ja jetzt kann kein keine man mich mir mit muss nach nicht nichts noch nur ob oder ohne schon sehr sein
    seine sich sie sind so über um und uns unser unter vom von vor war waren was weil wenn wer wie wir wird wo zu zum zur
    zwischen`.split(/\s+/),
  es: `a al algo algunos ante antes como con contra cual cuando de del desde donde durante e el ella ellas ellos en entre era
    eres es esa esas ese eso esos esta estaba estamos están estar este esto estos estoy fue fueron ha han hasta hay la las le
    les lo los más me mi mis mucho muy nada ni no nos nosotros o os para pero poco por porque qué que quien se sea ser si
    sí siempre sin sobre su sus también tan te tengo tiene todo todos tu tus tú un una uno unos usted y ya yo`.split(/\s+/),
  fr: `à ai aie alors au aucun aussi autre aux avec avoir bien c'est ça car ce cela ces cet cette ceux chez comme dans de des
    donc du elle elles en encore est et étaient était être eu fait faire il ils j'ai je la le les leur lui ma mais me même
    mes moi mon ne nos notre nous on ont ou où par pas peu plus pour pourquoi quand que quel quelle qui sa sans se ses si
    son sont sous suis sur ta te tes toi ton tous tout très tu un une vos votre vous y`.split(/\s+/),
  it: `a ai al alla alle anche avere c'è che chi ci come con cosa così da dai dal dalla del della delle dei di dove e è ed
    era essere gli ha hai hanno ho il in io la le lei lo loro lui ma mi mia mio molto ne nei nel nella noi non per perché
    più poi quando quello questa questo qui se sei si sia sono su sua sue suo tu tutti tutto un una uno voi`.split(/\s+/),
  pt: `a ao aos as até com como da das de dela dele do dos e é ela elas ele eles em entre era essa esse está estão eu foi
    há isso isto já lhe mais mas me meu minha muito na não nas nem no nos nós o os ou para pela pelo por porque quando que
    quem se sem ser seu sua são também te tem tenho um uma você vocês`.split(/\s+/),
  nl: `aan al alles als bij dan dat de deze die dit doen door dus een en er ge geen had heb hebben heeft het hier hij hoe
    hun ik in is ja je jij kan kon maar me met mij mijn na naar niet niets nog nu of om omdat ons ook op over te tegen toch
    tot u uit van veel voor want was wat we wel werd wie wij wil worden zal ze zei zelf zich zij zijn zo zou`.split(/\s+/),
};

export const LANGUAGE_NAMES: Record<string, string> = {
  en: 'English', de: 'German', es: 'Spanish', fr: 'French', it: 'Italian', pt: 'Portuguese', nl: 'Dutch',
};

/** Chat filler that carries no topic, in addition to the function words of every language above. */
const CHAT_FILLER = `ok okay yes yeah yep nope no lol haha hahaha hehe hmm oh ah uh um just like really well got get
  know think thanks thank please sure right good also would could one two now still going want need let see say said
  will can u ur im dont didnt cant wont thats its ive youre`.split(/\s+/);

export const KEYWORD_STOP_WORDS: ReadonlySet<string> = new Set([
  ...Object.values(STOP_WORDS).flat(),
  ...CHAT_FILLER,
]);
